package k8sharness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig writes a kubeconfig for a bearer token to DIR/NAME.kubeconfig
// and returns its path. The server is URL (BindAddress), so with Netns the
// file is for processes inside the lab, such as podrouted in a node
// namespace. name must be a plain file name.
func (cp *ControlPlane) Kubeconfig(name, token string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("k8sharness: kubeconfig name %q: must be a plain file name", name)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["podroute"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.pki.CAPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["podroute"] = &clientcmdapi.Context{Cluster: "podroute", AuthInfo: name}
	cfg.CurrentContext = "podroute"
	path := filepath.Join(cp.dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("k8sharness: writing %s: %w", path, err)
	}
	return path, nil
}

// RESTConfig is a client-go config for a bearer token. It trusts only this
// control plane's CA, and with Netns it dials from inside the namespace, so
// it works from the test process in the root namespace.
func (cp *ControlPlane) RESTConfig(token string) *rest.Config {
	cfg := &rest.Config{
		Host:            cp.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.pki.CAPEM},
		QPS:             100,
		Burst:           200,
		UserAgent:       "podroute-testbed",
	}
	if cp.opt.Netns != nil {
		cfg.Dial = cp.DialContext
	}
	return cfg
}

// AdminRESTConfig is RESTConfig(AdminToken).
func (cp *ControlPlane) AdminRESTConfig() *rest.Config { return cp.RESTConfig(cp.AdminToken) }

// Clientset is a typed clientset for a bearer token.
func (cp *ControlPlane) Clientset(token string) (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cp.RESTConfig(token))
}

// AdminClientset is Clientset(AdminToken).
func (cp *ControlPlane) AdminClientset() (*kubernetes.Clientset, error) {
	return cp.Clientset(cp.AdminToken)
}

// EnsureServiceAccount creates the namespace and the ServiceAccount in it if
// they do not exist yet (normally manifests/ creates them).
func (cp *ControlPlane) EnsureServiceAccount(ctx context.Context, namespace, name string) error {
	cs, err := cp.AdminClientset()
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("k8sharness: creating namespace %s: %w", namespace, err)
	}
	_, err = cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("k8sharness: creating serviceaccount %s/%s: %w", namespace, name, err)
	}
	return nil
}

// ServiceAccountToken asks the TokenRequest API for a token of an existing
// ServiceAccount, valid for ttl (at least 10 minutes; 0 means 24 hours). It
// is the same kind of token the kubelet projects into a pod: it
// authenticates as system:serviceaccount:NAMESPACE:NAME with groups
// system:serviceaccounts and system:serviceaccounts:NAMESPACE, stops working
// when the ServiceAccount is deleted, and survives API server restarts (the
// signing key stays). It is not refreshed: ask again for runs longer than ttl.
func (cp *ControlPlane) ServiceAccountToken(ctx context.Context, namespace, name string, ttl time.Duration) (string, error) {
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	secs := int64(ttl / time.Second)
	cs, err := cp.AdminClientset()
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("k8sharness: token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// Kubectl runs kubectl (from BinDir) with the admin kubeconfig, inside Netns
// if set, and returns its stdout. A failure's error holds stderr.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return cp.KubectlWith(ctx, cp.AdminKubeconfig, args...)
}

// KubectlWith is Kubectl with another kubeconfig (see Kubeconfig), e.g. to
// check what a ServiceAccount may do: `auth can-i --list`.
func (cp *ControlPlane) KubectlWith(ctx context.Context, kubeconfig string, args ...string) ([]byte, error) {
	argv := append([]string{filepath.Join(cp.opt.BinDir, Kubectl), "--kubeconfig=" + kubeconfig}, args...)
	if cp.opt.Netns != nil {
		argv = append([]string{"ip", "netns", "exec", cp.opt.Netns.Name}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), "KUBECONFIG=") // only the file we name
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
