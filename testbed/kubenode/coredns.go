package kubenode

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net"
	"strings"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/podroute/podroute/testbed/images"
)

//go:embed coredns.yaml
var corednsYAML string

var corednsTmpl = template.Must(template.New("coredns").Parse(corednsYAML))

// CoreDNSOptions fill the CoreDNS manifests.
type CoreDNSOptions struct {
	ClusterDNS string // the kube-dns Service's cluster IP; default DefaultClusterDNS (kubelet's clusterDNS)
	Domain     string // default DefaultClusterDomain
	Image      string // default images.CoreDNSImage
	Replicas   int    // default 1
}

// CoreDNSManifest renders the CoreDNS manifests (ServiceAccount, RBAC,
// ConfigMap, Deployment and the kube-dns Service) as multi-document YAML.
func CoreDNSManifest(o CoreDNSOptions) ([]byte, error) {
	if o.ClusterDNS == "" {
		o.ClusterDNS = DefaultClusterDNS
	}
	if o.Domain == "" {
		o.Domain = DefaultClusterDomain
	}
	if o.Image == "" {
		o.Image = images.CoreDNSImage
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if net.ParseIP(o.ClusterDNS) == nil {
		return nil, fmt.Errorf("kubenode: ClusterDNS %q is not an IP address", o.ClusterDNS)
	}
	var b bytes.Buffer
	if err := corednsTmpl.Execute(&b, o); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// CoreDNSObjects decodes the manifests into typed objects.
func CoreDNSObjects(o CoreDNSOptions) ([]runtime.Object, error) {
	y, err := CoreDNSManifest(o)
	if err != nil {
		return nil, err
	}
	var out []runtime.Object
	for _, doc := range strings.Split(string(y), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("kubenode: CoreDNS manifest: %w", err)
		}
		out = append(out, obj)
	}
	return out, nil
}

// ApplyCoreDNS creates the CoreDNS objects; ones that exist already are
// left as they are.
func ApplyCoreDNS(ctx context.Context, cs kubernetes.Interface, o CoreDNSOptions) error {
	objs, err := CoreDNSObjects(o)
	if err != nil {
		return err
	}
	c := metav1.CreateOptions{}
	for _, obj := range objs {
		switch x := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(x.Namespace).Create(ctx, x, c)
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, x, c)
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, x, c)
		case *corev1.ConfigMap:
			_, err = cs.CoreV1().ConfigMaps(x.Namespace).Create(ctx, x, c)
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(x.Namespace).Create(ctx, x, c)
		case *corev1.Service:
			_, err = cs.CoreV1().Services(x.Namespace).Create(ctx, x, c)
		default:
			err = fmt.Errorf("kubenode: CoreDNS manifest: unexpected %T", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("kubenode: creating CoreDNS objects: %w", err)
		}
	}
	return nil
}
