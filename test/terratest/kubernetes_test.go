package terratest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gruntwork-io/terratest/modules/terraform"

	"github.com/rdsgate/rdsgate/cmd/rdsgate/app"
	"github.com/rdsgate/rdsgate/proxyd"
)

// strict decodes a manifest into its Kubernetes API type, refusing any
// field the type does not have (a misspelt probe or volume field would
// otherwise be dropped by the API server without a word).
func strict(t *testing.T, files map[string][]byte, name string, v any) {
	t.Helper()
	data, ok := files[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestKubernetesManifests: proxy configure --kubernetes writes manifests
// that decode strictly into the Kubernetes API types and hang together:
// the Service, PodDisruptionBudget and autoscaler select the Deployment's
// pods, the probes are the proxy's health endpoints on its health port,
// the configuration in the ConfigMap is valid and names files where the
// pod mounts them, the service account carries the IAM role, and a pod's
// grace period outlasts the drain.
func TestKubernetesManifests(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("placeholder"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rbac := `{"rules": [{"name": "engineers", "identities": ["arn:aws:iam::123456789012:role/engineers"], "databases": ["*"], "db_users": ["app"], "db_names": ["*"]}]}`
	if err := os.WriteFile(filepath.Join(dir, "rbac.json"), []byte(rbac), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "k8s")
	const role = "arn:aws:iam::123456789012:role/rdsgate-proxy"
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"--name", "orders", "--protocol", "postgres", "--uri", "orders.abc.us-east-1.rds.amazonaws.com:5432", "--region", "us-east-1"},
		{"--merge", "--name", "billing", "--protocol", "mysql", "--uri", "billing.abc.us-east-1.rds.amazonaws.com:3306", "--region", "us-east-1",
			"--gateway", "--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"), "--client-ca", filepath.Join(dir, "ca.crt"),
			"--iam-audience", "prod-db-gateway", "--rbac-file", filepath.Join(dir, "rbac.json"),
			"--kubernetes", out, "--image", "ghcr.io/rdsgate/rdsgate:test", "--iam-role-arn", role, "--namespace", "data", "--service-type", "LoadBalancer"},
	} {
		argv := append([]string{"rdsgate", "proxy", "configure", "--output", filepath.Join(dir, "proxy.json")}, args...)
		if code := app.Execute(context.Background(), argv, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", argv, code, stdout.String(), stderr.String())
		}
	}
	if !strings.Contains(stdout.String(), "kubectl -n data apply -f "+out) {
		t.Fatalf("no apply command:\n%s", stdout.String())
	}
	files := map[string][]byte{}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	checkManifests(t, files, role, "data", rbac, corev1.ServiceTypeLoadBalancer)

}

func metav1LabelSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, errNoSelector
	}
	return labels.SelectorFromSet(m), nil
}

var errNoSelector = errorString("empty selector")

type errorString string

func (e errorString) Error() string { return string(e) }

// checkManifests decodes a fleet's manifests strictly and checks that they
// hang together.
func checkManifests(t *testing.T, files map[string][]byte, role, namespace, rbac string, serviceType corev1.ServiceType) {
	t.Helper()
	var (
		sa  corev1.ServiceAccount
		cm  corev1.ConfigMap
		dep appsv1.Deployment
		svc corev1.Service
		pdb policyv1.PodDisruptionBudget
		hpa autoscalingv2.HorizontalPodAutoscaler
	)
	strict(t, files, "serviceaccount.json", &sa)
	strict(t, files, "configmap.json", &cm)
	strict(t, files, "deployment.json", &dep)
	strict(t, files, "service.json", &svc)
	strict(t, files, "poddisruptionbudget.json", &pdb)
	strict(t, files, "horizontalpodautoscaler.json", &hpa)
	if len(files) != 6 {
		t.Errorf("%d manifests, want 6", len(files))
	}
	for kind, tm := range map[string]string{"ServiceAccount": sa.Kind, "ConfigMap": cm.Kind, "Deployment": dep.Kind, "Service": svc.Kind,
		"PodDisruptionBudget": pdb.Kind, "HorizontalPodAutoscaler": hpa.Kind} {
		if tm != kind {
			t.Errorf("kind %q, want %q", tm, kind)
		}
	}
	if sa.Annotations["eks.amazonaws.com/role-arn"] != role || sa.Namespace != namespace {
		t.Errorf("service account: %+v", sa.ObjectMeta)
	}
	pods := labels.Set(dep.Spec.Template.Labels)
	sel, err := metav1LabelSelector(dep.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(pods) {
		t.Fatalf("the Deployment's selector does not select its pods: %v", err)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) || svc.Spec.Type != serviceType {
		t.Errorf("service: %+v", svc.Spec)
	}
	if s, _ := metav1LabelSelector(pdb.Spec.Selector.MatchLabels); !s.Matches(pods) || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("pod disruption budget: %+v", pdb.Spec)
	}
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Name || hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 ||
		dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("autoscaler: %+v", hpa.Spec)
	}
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name || len(pod.Containers) != 1 {
		t.Fatalf("pod: %+v", pod)
	}
	c := pod.Containers[0]
	// The configuration the pods read, valid, and naming mounted files.
	pc, err := proxyd.ParseConfig([]byte(cm.Data["proxy.json"]), "configmap proxy.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cm.Data["rbac.json"]) != strings.TrimSpace(rbac) {
		t.Errorf("rbac.json in the ConfigMap: %q", cm.Data["rbac.json"])
	}
	mounted := func(path string) bool {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(path, m.MountPath+"/") {
				return true
			}
		}
		return false
	}
	for _, path := range []string{pc.CABundle, pc.Gateway.TLSCert, pc.Gateway.TLSKey, pc.Gateway.ClientCA, pc.Gateway.RBACFile, c.Args[len(c.Args)-1]} {
		if path != "" && !mounted(path) {
			t.Errorf("%s is not on a mounted volume", path)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, listen := range map[string]string{"postgres": pc.Gateway.ListenPostgres, "mysql": pc.Gateway.ListenMySQL, "api": pc.Gateway.ListenAPI, "health": pc.HealthAddress} {
		_, port, _ := strings.Cut(listen, ":")
		if listen == "" && ports[name] != 0 || listen != "" && strconv.Itoa(int(ports[name])) != port {
			t.Errorf("the pod's %s port is %d, the proxy listens on %q", name, ports[name], listen)
		}
	}
	for _, sp := range svc.Spec.Ports {
		if sp.TargetPort.StrVal == "" || ports[sp.TargetPort.StrVal] == 0 {
			t.Errorf("service port %s targets %v, which the pod does not have", sp.Name, sp.TargetPort)
		}
	}
	for path, p := range map[string]*corev1.Probe{"/startup": c.StartupProbe, "/readiness": c.ReadinessProbe, "/liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "health" {
			t.Errorf("probe %s: %+v", path, p)
		}
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= int64(time.Duration(pc.DrainTimeout).Seconds()) {
		t.Errorf("grace period %v does not outlast the drain %s", pod.TerminationGracePeriodSeconds, time.Duration(pc.DrainTimeout))
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("container security context: %+v", c.SecurityContext)
	}
	var replicaEnv bool
	for _, e := range c.Env {
		replicaEnv = replicaEnv || e.Name == "RDSGATE_REPLICA" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}
	if !replicaEnv {
		t.Error("pods do not name themselves in audit lines (RDSGATE_REPLICA from metadata.name)")
	}
}

// TestProxyModuleKubernetes: modules/proxy with kubernetes set gives the
// same manifests through Terraform, the IRSA role defaulting to the
// proxy's role and the RBAC rules written in HCL in the ConfigMap.
func TestProxyModuleKubernetes(t *testing.T) {
	w := newWorld(t)
	const role = "arn:aws:iam::123456789012:role/p"
	opts := w.options("modules/proxy", map[string]any{
		"databases": []map[string]any{{"name": "orders", "engine": "postgres", "kind": "instance", "region": "us-east-1",
			"endpoint": "orders.abc.us-east-1.rds.amazonaws.com", "port": 5432, "db_users": []string{"app"}}},
		"proxy_role_arn": role,
		"gateway":        map[string]any{"listen_postgres": ":5432", "listen_api": ":8443", "tls_cert": "/etc/rdsgate/tls.crt", "tls_key": "/etc/rdsgate/tls.key", "iam_audience": "prod-db-gateway"},
		"rbac_rules": []map[string]any{{"name": "engineers", "identities": []string{"arn:aws:iam::123456789012:role/engineers"}, "databases": []string{"*"},
			"db_users": []string{"app"}, "db_names": []string{"*"}}},
		"kubernetes": map[string]any{"image": "ghcr.io/rdsgate/rdsgate:test"},
	})
	defer terraform.Destroy(t, opts)
	terraform.InitAndApply(t, opts)
	out := terraform.OutputMap(t, opts, "kubernetes_manifests")
	files := map[string][]byte{}
	for name, v := range out {
		files[name] = []byte(v)
	}
	checkManifests(t, files, role, "", terraform.Output(t, opts, "rbac_json"), corev1.ServiceTypeClusterIP)
}
