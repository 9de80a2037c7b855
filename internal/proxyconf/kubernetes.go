package proxyconf

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rdsgate/rdsgate/proxyd"
)

// KubeOptions shape the Kubernetes manifests of a gateway fleet.
type KubeOptions struct {
	// Name of every object (default rdsgate-proxy), in Namespace (default:
	// the one kubectl applies them to).
	Name      string
	Namespace string
	// Image runs rdsgate (its entry point is the rdsgate binary).
	Image string
	// IAMRoleARN is the proxy's role, for IAM roles for service accounts
	// (the service account's eks.amazonaws.com/role-arn annotation).
	IAMRoleARN string
	// Replicas the fleet starts with and keeps at least (default 3); the
	// autoscaler goes up to MaxReplicas (default 10) at 70% CPU.
	Replicas, MaxReplicas int
	// ServiceType is ClusterIP (default) or LoadBalancer.
	ServiceType string
	// RBAC is the RBAC file's content, put in the ConfigMap ("" leaves a
	// deny-all file to replace).
	RBAC []byte
}

// Where the manifests mount what the proxy reads.
const (
	kubeConfigDir = "/etc/rdsgate/config"
	kubeTLSDir    = "/etc/rdsgate/tls"
	kubeCADir     = "/etc/rdsgate/ca"
	kubeHealth    = 9187
	// KubeTLSSecret holds the gateway's certificate (tls.crt, tls.key) and
	// the client CA (ca.crt), KubeCAConfigMap the RDS CA bundle
	// (global-bundle.pem).
	KubeTLSSecret   = "-tls"
	KubeCAConfigMap = "-ca-bundle"
)

type obj = map[string]any

// Kubernetes makes the manifests of a fleet of gateway replicas that serve
// as one behind a Service: a ServiceAccount (IAM roles for service
// accounts), a ConfigMap with the configuration (its paths those of the
// mounts) and the RBAC file, a Deployment whose probes are the proxy's
// /startup, /readiness and /liveness and whose pods drain on SIGTERM within
// their grace period, a Service, a PodDisruptionBudget and a
// HorizontalPodAutoscaler. It returns the files by name, JSON that kubectl
// applies, and the configuration as the pods read it.
func Kubernetes(pc *proxyd.Config, o KubeOptions) (map[string][]byte, *proxyd.Config, error) {
	g := pc.Gateway
	if g == nil {
		return nil, nil, fmt.Errorf("a fleet on Kubernetes serves as a gateway (the databases' own listeners would be each pod's loopback): add --gateway")
	}
	if o.Image == "" {
		return nil, nil, fmt.Errorf("the Kubernetes manifests need --image, the container image that runs rdsgate")
	}
	if o.Name == "" {
		o.Name = "rdsgate-proxy"
	}
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.MaxReplicas == 0 {
		o.MaxReplicas = max(10, o.Replicas)
	}
	if o.MaxReplicas < o.Replicas {
		return nil, nil, fmt.Errorf("--max-replicas %d is fewer than --replicas %d", o.MaxReplicas, o.Replicas)
	}
	if o.ServiceType == "" {
		o.ServiceType = "ClusterIP"
	}
	if o.ServiceType != "ClusterIP" && o.ServiceType != "LoadBalancer" {
		return nil, nil, fmt.Errorf("--service-type %q: ClusterIP or LoadBalancer", o.ServiceType)
	}
	// The configuration as the pods see it.
	in := *pc
	gw := *g
	in.Gateway = &gw
	in.CABundle = kubeCADir + "/global-bundle.pem"
	gw.TLSCert, gw.TLSKey = kubeTLSDir+"/tls.crt", kubeTLSDir+"/tls.key"
	if gw.ClientCA != "" {
		gw.ClientCA = kubeTLSDir + "/ca.crt"
	}
	gw.RBACFile = kubeConfigDir + "/rbac.json"
	in.HealthAddress = ":" + strconv.Itoa(kubeHealth)
	if in.AuditLog != "" {
		in.AuditLog = "-" // a pod's standard output is where its logs are collected
	}
	in.Replica = "" // each pod names itself (RDSGATE_REPLICA)
	if err := in.Validate(); err != nil {
		return nil, nil, err
	}
	config, err := JSON(&in)
	if err != nil {
		return nil, nil, err
	}
	rbac := o.RBAC
	if len(rbac) == 0 {
		rbac = []byte(`{"rules": []}` + "\n")
	}
	labels := obj{"app.kubernetes.io/name": "rdsgate-proxy", "app.kubernetes.io/instance": o.Name}
	meta := func(name string) obj {
		m := obj{"name": name, "labels": labels}
		if o.Namespace != "" {
			m["namespace"] = o.Namespace
		}
		return m
	}
	type port struct {
		name string
		addr string
	}
	var ports, containerPorts []obj
	for _, p := range []port{{"postgres", gw.ListenPostgres}, {"mysql", gw.ListenMySQL}, {"api", gw.ListenAPI}} {
		if p.addr == "" {
			continue
		}
		_, s, err := net.SplitHostPort(p.addr)
		n, _ := strconv.Atoi(s)
		if err != nil || n == 0 {
			return nil, nil, fmt.Errorf("gateway listener %s %q: a pod needs a fixed port", p.name, p.addr)
		}
		ports = append(ports, obj{"name": p.name, "port": n, "targetPort": p.name, "protocol": "TCP"})
		containerPorts = append(containerPorts, obj{"name": p.name, "containerPort": n, "protocol": "TCP"})
	}
	containerPorts = append(containerPorts, obj{"name": "health", "containerPort": kubeHealth, "protocol": "TCP"})
	probe := func(path string, period, failures int) obj {
		return obj{"httpGet": obj{"path": path, "port": "health"}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 2}
	}
	drain := time.Duration(in.DrainTimeout)
	sa := obj{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(o.Name)}
	if o.IAMRoleARN != "" {
		sa["metadata"].(obj)["annotations"] = obj{"eks.amazonaws.com/role-arn": o.IAMRoleARN}
	}
	env := []obj{{"name": "RDSGATE_REPLICA", "valueFrom": obj{"fieldRef": obj{"fieldPath": "metadata.name"}}}}
	if in.Region != "" {
		env = append(env, obj{"name": "AWS_REGION", "value": in.Region})
	}
	volumes := []obj{
		{"name": "config", "configMap": obj{"name": o.Name}},
		{"name": "tls", "secret": obj{"secretName": o.Name + KubeTLSSecret}},
		{"name": "ca-bundle", "configMap": obj{"name": o.Name + KubeCAConfigMap}},
	}
	mounts := []obj{
		{"name": "config", "mountPath": kubeConfigDir, "readOnly": true},
		{"name": "tls", "mountPath": kubeTLSDir, "readOnly": true},
		{"name": "ca-bundle", "mountPath": kubeCADir, "readOnly": true},
	}
	deployment := obj{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(o.Name), "spec": obj{
		"replicas": o.Replicas,
		"selector": obj{"matchLabels": labels},
		// One pod at a time, a new one ready before an old one drains.
		"strategy": obj{"type": "RollingUpdate", "rollingUpdate": obj{"maxUnavailable": 0, "maxSurge": 1}},
		"template": obj{
			"metadata": obj{"labels": labels},
			"spec": obj{
				"serviceAccountName": o.Name,
				// SIGTERM drains for drain_timeout; the kubelet waits that
				// and a little more before it kills.
				"terminationGracePeriodSeconds": int((drain + 15*time.Second).Seconds()),
				"securityContext":               obj{"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": obj{"type": "RuntimeDefault"}},
				"topologySpreadConstraints": []obj{{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
					"labelSelector": obj{"matchLabels": labels}}},
				"containers": []obj{{
					"name":  "rdsgate",
					"image": o.Image,
					"args":  []string{"proxy", "start", "--config", kubeConfigDir + "/proxy.json"},
					"env":   env,
					"ports": containerPorts,
					// The load balancer stops sending new connections
					// once readiness fails, which SIGTERM does at once;
					// the pause lets the endpoint removal reach every
					// node before the listeners close.
					"lifecycle":      obj{"preStop": obj{"sleep": obj{"seconds": 5}}},
					"startupProbe":   probe("/startup", 2, 30),
					"readinessProbe": probe("/readiness", 5, 1),
					"livenessProbe":  probe("/liveness", 10, 3),
					"resources":      obj{"requests": obj{"cpu": "250m", "memory": "128Mi"}, "limits": obj{"memory": "512Mi"}},
					"securityContext": obj{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
						"capabilities": obj{"drop": []string{"ALL"}}},
					"volumeMounts": mounts,
				}},
				"volumes": volumes,
			},
		},
	}}
	service := obj{"apiVersion": "v1", "kind": "Service", "metadata": meta(o.Name), "spec": obj{
		"type": o.ServiceType, "selector": labels, "ports": ports,
	}}
	if o.ServiceType == "LoadBalancer" {
		// An NLB that sends each connection to a pod, not to a node.
		service["metadata"].(obj)["annotations"] = obj{"service.beta.kubernetes.io/aws-load-balancer-type": "external",
			"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"}
	}
	pdb := obj{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(o.Name), "spec": obj{
		"maxUnavailable": 1, "selector": obj{"matchLabels": labels},
	}}
	hpa := obj{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(o.Name), "spec": obj{
		"scaleTargetRef": obj{"apiVersion": "apps/v1", "kind": "Deployment", "name": o.Name},
		"minReplicas":    o.Replicas, "maxReplicas": o.MaxReplicas,
		"metrics": []obj{{"type": "Resource", "resource": obj{"name": "cpu", "target": obj{"type": "Utilization", "averageUtilization": 70}}}},
		// Scale down slowly: each pod that goes drains its sessions.
		"behavior": obj{"scaleDown": obj{"stabilizationWindowSeconds": 300, "policies": []obj{{"type": "Pods", "value": 1, "periodSeconds": 120}}}},
	}}
	configMap := obj{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(o.Name), "data": obj{"proxy.json": string(config), "rbac.json": string(rbac)}}
	files := map[string][]byte{}
	for name, v := range map[string]obj{"serviceaccount.json": sa, "configmap.json": configMap, "deployment.json": deployment,
		"service.json": service, "poddisruptionbudget.json": pdb, "horizontalpodautoscaler.json": hpa} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		files[name] = append(b, '\n')
	}
	return files, &in, nil
}

// KubeInstructions are the commands that create what the manifests refer
// to and apply them.
func KubeInstructions(dir string, pc *proxyd.Config, o KubeOptions) string {
	name := o.Name
	if name == "" {
		name = "rdsgate-proxy"
	}
	ns := ""
	if o.Namespace != "" {
		ns = " -n " + o.Namespace
	}
	ca := ""
	if pc.Gateway != nil && pc.Gateway.ClientCA != "" {
		ca = " --from-file=ca.crt=" + pc.Gateway.ClientCA
	}
	return fmt.Sprintf(`  rdsgate proxy ca-bundle --output global-bundle.pem
  kubectl%[1]s create configmap %[2]s%[3]s --from-file=global-bundle.pem
  kubectl%[1]s create secret generic %[2]s%[4]s --from-file=tls.crt=%[5]s --from-file=tls.key=%[6]s%[7]s
  kubectl%[1]s apply -f %[8]s
`, ns, name, KubeCAConfigMap, KubeTLSSecret, pc.Gateway.TLSCert, pc.Gateway.TLSKey, ca, dir)
}
