package main

import (
	"context"
	"net/netip"
	"time"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/bgp"
	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/internal/community"
	"github.com/podroute/podroute/policy/controller"
	"github.com/podroute/podroute/routes"
)

// statusServer answers the podroute CLI from the live speaker and
// reconciler; it keeps no state of its own.
type statusServer struct {
	api.UnimplementedStatusServer
	cfg     *config.Config
	speaker *bgp.Speaker
	routes  *routes.Reconciler
	policy  *controller.Controller // nil: NetworkPolicy not enforced
	started time.Time
	// services returns the Service lines last applied (nil: none).
	services func() []cluster.ServiceRoute
}

func (s *statusServer) GetStatus(ctx context.Context, _ *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	peers, err := s.speaker.PeerStatus(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.GetStatusResponse{
		Node: &api.Node{
			Name:            s.cfg.NodeName,
			RouterId:        s.cfg.RouterID,
			Asn:             s.cfg.ASN,
			Version:         version,
			StartedUnix:     s.started.Unix(),
			Synced:          s.routes.Synced(),
			RouteProtocol:   uint32(s.cfg.RouteProtocol),
			RouteTable:      uint32(s.cfg.RouteTable),
			GracefulRestart: s.cfg.GracefulRestart.IsEnabled(),
		},
	}
	for _, p := range peers {
		resp.Peers = append(resp.Peers, peerToAPI(p, s.cfg.ASN))
	}
	for _, p := range s.speaker.Originated() {
		resp.OriginatedPrefixes = append(resp.OriginatedPrefixes, p.String())
	}
	return resp, nil
}

func peerToAPI(p bgp.PeerStatus, localASN uint32) *api.Peer {
	typ := "eBGP"
	if p.Peer.ASN == localASN {
		typ = "iBGP"
	}
	out := &api.Peer{
		Address:         p.Peer.Address.String(),
		Asn:             p.Peer.ASN,
		State:           p.State,
		Received:        p.Received,
		Accepted:        p.Accepted,
		Advertised:      p.Advertised,
		MaxPrefixes:     p.Peer.MaxPrefixes,
		Description:     p.Peer.Description,
		Info:            p.Info,
		GracefulRestart: p.Peer.GracefulRestart,
		Type:            typ,
	}
	if !p.StateSince.IsZero() {
		out.StateSinceUnix = p.StateSince.Unix()
	}
	if p.Peer.LocalAddress.IsValid() {
		out.LocalAddress = p.Peer.LocalAddress.String()
	}
	return out
}

func (s *statusServer) ListRoutes(_ context.Context, req *api.ListRoutesRequest) (*api.ListRoutesResponse, error) {
	sum := s.routes.Summary()
	resp := &api.ListRoutesResponse{Summary: &api.RouteSummary{
		Learned: uint64(sum.Learned), Blackholes: uint64(sum.Blackholes), Stale: uint64(sum.Stale),
		InKernel: uint64(sum.InKernel), Failed: uint64(sum.Failed), Refused: uint64(sum.Refused),
		Originated: uint64(len(s.speaker.Originated())),
	}}
	advs := s.speaker.Advertisements()
	resp.Summary.ServicePrefixes = uint64(len(advs))
	if req.GetSummaryOnly() {
		return resp, nil
	}
	resp.Services = s.serviceLines(advs)
	snap := s.routes.Snapshot()
	resp.Routes = make([]*api.Route, 0, len(snap))
	for _, r := range snap {
		resp.Routes = append(resp.Routes, &api.Route{
			Prefix:   r.Route.Prefix.String(),
			NextHops: addrStrings(r.Route.NextHops),
			InKernel: r.InKernel,
			Kind:     string(r.Kind),
			Error:    r.Error,
		})
	}
	return resp, nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func (s *statusServer) GetPolicy(context.Context, *api.GetPolicyRequest) (*api.GetPolicyResponse, error) {
	if s.policy == nil {
		return &api.GetPolicyResponse{}, nil
	}
	resp := &api.GetPolicyResponse{Enforced: true}
	select {
	case <-s.policy.Synced():
		resp.Synced = true
	default:
	}
	for _, p := range s.policy.Status() {
		resp.Pods = append(resp.Pods, &api.PolicyPod{Pod: p.Pod, Addresses: p.Addrs, Ingress: p.Ingress, Egress: p.Egress,
			IngressRules: uint32(p.IngressRules), EgressRules: uint32(p.EgressRules)})
	}
	for _, p := range s.policy.Problems() {
		resp.Problems = append(resp.Problems, &api.PolicyProblem{Kind: p.Kind, Object: p.Object.String(), Reason: p.Reason, Message: p.Message})
	}
	return resp, nil
}

// serviceLines turns the computed Service lines into the API's, checking
// each against what the speaker really originates: a prefix it refused
// (see the log) is not shown as advertised.
func (s *statusServer) serviceLines(advs []bgp.Advertisement) []*api.ServicePrefix {
	if s.services == nil {
		return nil
	}
	byPrefix := make(map[netip.Prefix]bgp.Advertisement, len(advs))
	for _, a := range advs {
		byPrefix[a.Prefix] = a
	}
	lines := s.services()
	out := make([]*api.ServicePrefix, 0, len(lines))
	for _, l := range lines {
		sp := &api.ServicePrefix{Prefix: l.Prefix.String(), Service: l.Service, Kind: string(l.Kind), Reason: string(l.Reason)}
		if l.Advertised {
			if a, ok := byPrefix[l.Via]; ok {
				sp.Advertised, sp.Via = true, l.Via.String()
				for _, c := range a.Communities {
					sp.Communities = append(sp.Communities, community.FormatStandard(c))
				}
				for _, c := range a.LargeCommunities {
					sp.LargeCommunities = append(sp.LargeCommunities, community.FormatLarge(c))
				}
			} else {
				sp.Reason += "; but " + l.Via.String() + " is not originated (refused by the speaker: see the log)"
			}
		}
		out = append(out, sp)
	}
	return out
}
