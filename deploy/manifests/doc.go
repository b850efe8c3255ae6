// Package manifests holds no code: its tests check the deployment files
// that no tool here can run (no Docker engine, no Kubernetes cluster):
//
//   - ../../Dockerfile and ../../.dockerignore: parsed instruction by
//     instruction (multi-stage, static build, non-root, no shell needed in
//     the final image, the state volume, the port), and the build context
//     checked to hold every file `go build ./cmd/sponsor` needs;
//   - ../compose/compose.yaml: loaded and validated by compose-go against
//     the compose specification, offline and with an empty environment;
//   - ../k8s/*.yaml: decoded strictly (unknown fields fail) into the
//     Kubernetes API types of k8s.io/api, then checked for what the
//     pipeline needs (probes, state volume, identity, shutdown time);
//   - ../grafana/sponsor.json: every metric its queries use must be one the
//     pipeline really exports, gathered from a live Prometheus registry;
//   - ../prometheus/sponsor-rules.yaml: the alert rules read only exported
//     metrics and name a runbook section, and promtool (when on PATH) runs
//     their unit tests, sponsor-rules.test.yaml.
//
// Every SPONSOR_* variable and flag these files set is checked against
// `sponsor run --help`, so a renamed flag breaks the tests, not a
// deployment.
package manifests
