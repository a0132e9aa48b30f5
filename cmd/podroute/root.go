package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podroute/podroute/api"
)

const (
	// defaultSocket is where podrouted serves its status API unless told
	// otherwise; the DaemonSet mounts /run/podroute from the host.
	defaultSocket = "/run/podroute/podrouted.sock"
	// socketEnv overrides defaultSocket, for nodes where the daemon runs
	// with a different --socket.
	socketEnv = "PODROUTE_SOCKET"
	// ipamDirEnv overrides the default IPAM store of `podroute ipam`, for
	// nodes whose CNI config names another dataDir (the lab's nodes).
	ipamDirEnv = "PODROUTE_IPAM_DIR"

	outputTable = "table"
	outputJSON  = "json"
)

// version is the CLI's version, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// options are the global flags every command shares.
type options struct {
	socket  string
	output  string
	timeout time.Duration
}

// newRootCommand builds the podroute command tree. getenv is os.Getenv in
// main and a map lookup in tests, so tests never depend on the caller's
// environment.
func newRootCommand(getenv func(string) string) *cobra.Command {
	opts := &options{}
	root := &cobra.Command{
		Use:   "podroute",
		Short: "Show what podrouted is doing on this node",
		Long: "podroute reads the status of podrouted, the podroute node daemon, over its local\n" +
			"unix socket: BGP sessions, originated prefixes and the routes it keeps in the kernel.",
		// Errors are printed once, by main; a failed RPC is not a usage mistake.
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return opts.validate()
		},
	}

	socket := defaultSocket
	if env := getenv(socketEnv); env != "" {
		socket = env
	}
	flags := root.PersistentFlags()
	flags.StringVar(&opts.socket, "socket", socket,
		"podrouted's status socket (the default comes from "+socketEnv+" if set)")
	flags.StringVarP(&opts.output, "output", "o", outputTable, "output format: table or json")
	flags.DurationVar(&opts.timeout, "timeout", 5*time.Second, "how long to wait for podrouted to answer")

	root.AddCommand(
		newStatusCommand(opts),
		newPeersCommand(opts),
		newRoutesCommand(opts),
		newIPAMCommand(opts, getenv),
		newPolicyCommand(opts),
		newVersionCommand(),
	)
	return root
}

func (o *options) validate() error {
	if o.output != outputTable && o.output != outputJSON {
		return fmt.Errorf("invalid --output %q: want %s or %s", o.output, outputTable, outputJSON)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("invalid --timeout %s: want a positive duration such as 5s", o.timeout)
	}
	if o.socket == "" {
		return errors.New("invalid --socket: the path is empty")
	}
	return nil
}

// unreachableHint ends every "cannot reach" error: the usual causes are a
// daemon that is not running and a CLI looking at the wrong path.
const unreachableHint = "is podrouted running on this node? (set --socket or " + socketEnv + ")"

// callDaemon connects to podrouted and runs call within --timeout. It is the
// one place that talks to the socket, so every command reports an absent or
// silent daemon the same way, naming the socket it tried.
func (o *options) callDaemon(ctx context.Context, call func(context.Context, api.StatusClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	conn, err := api.Dial(ctx, o.socket)
	if err != nil {
		// api.Dial's error already reads "cannot reach podrouted at PATH: ...".
		return fmt.Errorf("%w: %s", err, unreachableHint)
	}
	defer conn.Close()

	err = call(ctx, api.NewStatusClient(conn))
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unavailable:
		// The daemon went away between the dial and the call.
		return fmt.Errorf("cannot reach podrouted at %s: %s: %s", o.socket, status.Convert(err).Message(), unreachableHint)
	case codes.DeadlineExceeded:
		return fmt.Errorf("podrouted at %s did not answer within %s (raise --timeout if it is busy)", o.socket, o.timeout)
	default:
		return fmt.Errorf("podrouted at %s: %w", o.socket, err)
	}
}
