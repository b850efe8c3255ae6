package manifests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomization.yaml the test reads.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// podMonitor is the part of monitoring.coreos.com/v1 PodMonitor the
// manifests use; decoding is strict, so any other field fails the test.
type podMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// k8sObjects are the decoded manifests of deploy/k8s.
type k8sObjects struct {
	sts       *appsv1.StatefulSet
	svc       *corev1.Service
	cm        *corev1.ConfigMap
	pdb       *policyv1.PodDisruptionBudget
	monitor   *podMonitor
	resources []string // the files kustomization.yaml lists
}

// loadK8s decodes every YAML document of deploy/k8s strictly (unknown or
// duplicate fields fail) into its Kubernetes API type.
func loadK8s(t *testing.T) k8sObjects {
	t.Helper()
	dir := filepath.Join(root, "deploy/k8s")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	var o k8sObjects
	var listed []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		for i, doc := range splitYAML(b) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", base, i, err)
			}
			where := base + ": " + tm.Kind
			decode := func(into any) {
				t.Helper()
				if err := yaml.UnmarshalStrict(doc, into); err != nil {
					t.Fatalf("%s: strict decode: %v", where, err)
				}
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "kustomize.config.k8s.io/v1beta1 Kustomization":
				var k kustomization
				decode(&k)
				o.resources = k.Resources
				continue
			case "apps/v1 StatefulSet":
				o.sts = new(appsv1.StatefulSet)
				decode(o.sts)
			case "v1 Service":
				o.svc = new(corev1.Service)
				decode(o.svc)
			case "v1 ConfigMap":
				o.cm = new(corev1.ConfigMap)
				decode(o.cm)
			case "policy/v1 PodDisruptionBudget":
				o.pdb = new(policyv1.PodDisruptionBudget)
				decode(o.pdb)
			case "monitoring.coreos.com/v1 PodMonitor":
				o.monitor = new(podMonitor)
				decode(o.monitor)
			default:
				t.Fatalf("%s: unexpected %s %s: teach this test its type", base, tm.APIVersion, tm.Kind)
			}
			listed = append(listed, base)
		}
	}
	if o.sts == nil || o.svc == nil || o.cm == nil || o.pdb == nil || o.monitor == nil {
		t.Fatalf("want a StatefulSet, Service, ConfigMap, PodDisruptionBudget and PodMonitor, got %+v", o)
	}
	slices.Sort(listed)
	res := slices.Sorted(slices.Values(o.resources))
	if !slices.Equal(slices.Compact(listed), res) {
		t.Errorf("kustomization.yaml lists %v, the folder has manifests %v", res, slices.Compact(listed))
	}
	return o
}

// splitYAML splits a multi-document YAML file on its --- lines.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if len(bytes.TrimSpace([]byte(stripComments(d)))) > 0 {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestKubernetes(t *testing.T) {
	o := loadK8s(t)
	sts, pod := o.sts, &o.sts.Spec.Template.Spec

	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("StatefulSet replicas %v, want 3", sts.Spec.Replicas)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("container args %v, want run first (the image's entrypoint is /sponsor)", c.Args)
	}
	args := checkArgs(t, "StatefulSet args", c.Args[1:])

	// Config from the ConfigMap, not contradicted by the args.
	var envNames []string
	for k := range o.cm.Data {
		envNames = append(envNames, k)
	}
	for _, e := range c.Env {
		envNames = append(envNames, e.Name)
	}
	checkEnv(t, "StatefulSet env and ConfigMap", envNames)
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != o.cm.Name {
		t.Errorf("container envFrom %+v, want the ConfigMap %s", c.EnvFrom, o.cm.Name)
	}
	for _, k := range []string{"SPONSOR_BROKERS", "SPONSOR_REGISTRY"} {
		if o.cm.Data[k] == "" {
			t.Errorf("ConfigMap has no %s", k)
		}
	}
	for k := range o.cm.Data {
		if fl, ok := envFlag(k); ok {
			if _, both := args[fl]; both {
				t.Errorf("ConfigMap %s and the args both set --%s; the args win, so one is dead", k, fl)
			}
			if pendingFlags[fl] || strings.Contains(fl, "password") || strings.Contains(fl, "secret") {
				t.Errorf("ConfigMap holds %s: credentials belong in a Secret", k)
			}
		}
	}

	// Identity: the pod name, static membership.
	var instance *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "SPONSOR_INSTANCE_ID" {
			instance = &c.Env[i]
		}
	}
	if instance == nil || instance.ValueFrom == nil || instance.ValueFrom.FieldRef == nil || instance.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("SPONSOR_INSTANCE_ID %+v, want valueFrom.fieldRef metadata.name (the stable pod name)", instance)
	}
	if args["static"] != "true" {
		t.Errorf("args %v: want --static, so a rolling restart does not rebalance", c.Args)
	}

	// Credentials only from an optional Secret.
	var secrets int
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			if e.Value != "" && (strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "SASL")) {
				t.Errorf("env %s has a literal value; credentials come from a Secret", e.Name)
			}
			continue
		}
		secrets++
		if ref := e.ValueFrom.SecretKeyRef; ref.Optional == nil || !*ref.Optional {
			t.Errorf("env %s: secretKeyRef %s/%s is not optional: a cluster without credentials could not start the pods", e.Name, ref.Name, ref.Key)
		}
	}
	if secrets == 0 {
		t.Errorf("no env from a secretKeyRef: where do SASL and registry credentials come from?")
	}

	// HTTP: on every interface, on the named port the probes use.
	if args["http"] != "0.0.0.0:8080" {
		t.Errorf("--http %q, want 0.0.0.0:8080 (the default 127.0.0.1 is unreachable by the kubelet)", args["http"])
	}
	var port *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.ContainerPort == 8080 {
			port = &c.Ports[i]
		}
	}
	if port == nil || port.Name == "" {
		t.Fatalf("container ports %+v: want a named port 8080", c.Ports)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", name, path)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s: path %s, want %s", name, p.HTTPGet.Path, path)
		}
		if pt := p.HTTPGet.Port; pt.StrVal != port.Name && pt.IntVal != port.ContainerPort {
			t.Errorf("%s: port %s, want %s (%d)", name, pt.String(), port.Name, port.ContainerPort)
		}
	}
	probe("readinessProbe", c.ReadinessProbe, "/readyz")
	probe("livenessProbe", c.LivenessProbe, "/healthz")

	// The state folder is the volume claim.
	stateDir := args["state-dir"]
	if stateDir == "" {
		t.Fatalf("args %v: no --state-dir", c.Args)
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == stateDir {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || mount.ReadOnly {
		t.Fatalf("no writable volume mounted at --state-dir %s: %+v", stateDir, c.VolumeMounts)
	}
	var claimed bool
	for _, vct := range sts.Spec.VolumeClaimTemplates {
		if vct.Name == mount.Name {
			claimed = true
			if _, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				t.Errorf("volumeClaimTemplate %s requests no storage", vct.Name)
			}
		}
	}
	if !claimed {
		t.Errorf("the state mount %s is not a volumeClaimTemplate: a pod would lose its state on every move", mount.Name)
	}

	// Shutdown: SIGTERM lets the iteration in flight finish (bounded by
	// the transaction timeout), ends its transaction (bounded by the
	// transaction timeout again) and closes the group session (10s).
	txn := 20 * time.Second
	if v, ok := o.cm.Data["SPONSOR_TRANSACTION_TIMEOUT"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SPONSOR_TRANSACTION_TIMEOUT=%q: %v", v, err)
		}
		txn = d
	}
	shutdown := 2*txn + 10*time.Second
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < shutdown+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, want at least %v (2 x transaction timeout %v + 10s to close + 5s margin)", ptrString(g), shutdown+5*time.Second, txn)
	}

	// One pod per node.
	aff := pod.Affinity
	if aff == nil || aff.PodAntiAffinity == nil {
		t.Fatalf("no pod anti-affinity")
	}
	var spread bool
	for _, term := range aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		spread = spread || term.TopologyKey == "kubernetes.io/hostname" && selects(term.LabelSelector, sts.Spec.Template.Labels)
	}
	for _, w := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		spread = spread || w.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && selects(w.PodAffinityTerm.LabelSelector, sts.Spec.Template.Labels)
	}
	if !spread {
		t.Errorf("pod anti-affinity %+v does not spread the pods over nodes (kubernetes.io/hostname)", aff.PodAntiAffinity)
	}

	// Security.
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext: want runAsNonRoot")
	}
	if psc == nil || psc.FSGroup == nil {
		t.Errorf("pod securityContext: want fsGroup, so the non-root user can write the state volume")
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext: want readOnlyRootFilesystem")
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext: want allowPrivilegeEscalation false")
	}
	if csc == nil || csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext: want capabilities drop ALL")
	}

	// Resources.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("no memory limit")
	}

	// The headless Service governs the StatefulSet and selects its pods.
	if o.svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want None (headless)", o.svc.Spec.ClusterIP)
	}
	if sts.Spec.ServiceName != o.svc.Name {
		t.Errorf("StatefulSet serviceName %q, want the headless Service %q", sts.Spec.ServiceName, o.svc.Name)
	}
	if !selects(&metav1.LabelSelector{MatchLabels: o.svc.Spec.Selector}, sts.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the pods %v", o.svc.Spec.Selector, sts.Spec.Template.Labels)
	}
	if !selects(sts.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("StatefulSet selector does not select its own pods")
	}

	// At most one pod down at a time.
	if mu := o.pdb.Spec.MaxUnavailable; mu == nil || mu.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", mu)
	}
	if !selects(o.pdb.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget selector does not select the pods")
	}

	// Prometheus scrapes /metrics on the pods' port.
	m := o.monitor
	if !selects(&m.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("PodMonitor selector does not select the pods")
	}
	if len(m.Spec.PodMetricsEndpoints) != 1 || m.Spec.PodMetricsEndpoints[0].Port != port.Name || m.Spec.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v, want port %s path /metrics", m.Spec.PodMetricsEndpoints, port.Name)
	}
}

// selects reports whether sel's matchLabels all hold in labels (the
// manifests use no matchExpressions).
func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 || len(sel.MatchExpressions) > 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestStrictDecodeRejectsUnknownFields is the negative control of
// TestKubernetes: a misspelt field fails the decode instead of vanishing.
func TestStrictDecodeRejectsUnknownFields(t *testing.T) {
	for _, bad := range []string{
		"apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  replica: 3\n",
		"apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          readynessProbe: {}\n",
		"apiVersion: v1\nkind: ConfigMap\ndata:\n  A: x\n  A: y\n",
	} {
		var v any = new(appsv1.StatefulSet)
		if strings.Contains(bad, "ConfigMap") {
			v = new(corev1.ConfigMap)
		}
		if err := yaml.UnmarshalStrict([]byte(bad), v); err == nil {
			t.Errorf("strict decode accepted:\n%s", bad)
		}
	}
}

func ptrString(p *int64) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprintf("%ds", *p)
}
