# The sponsor image: a static binary on distroless, run as a non-root user,
# read-only except the state volume at /var/lib/sponsor.
#
#   docker build -t sponsor .
#   docker run --read-only -v sponsor-state:/var/lib/sponsor \
#     -e SPONSOR_BROKERS=kafka:9092 -e SPONSOR_REGISTRY=http://registry:8081 sponsor
#
# Every flag of `sponsor run` is also an environment variable SPONSOR_<FLAG>
# (--state-dir is SPONSOR_STATE_DIR); a flag on the command line wins.
# Checked by deploy/manifests (go test ./deploy/...): no Docker engine runs
# in CI.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Pure Go (CGO_ENABLED=0): the binary runs on an image with no libc.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/sponsor ./cmd/sponsor
# The state folder, created here (the final image has no shell) so that a new
# named volume mounted on it starts owned by the non-root user.
RUN mkdir -p /out/state

# busybox's wget, only for `docker compose` healthchecks on /readyz:
# distroless has neither a shell nor an HTTP client, and the sponsor binary
# has no probe command yet. Kubernetes probes over HTTP and does not need it.
FROM busybox:1.37-musl AS probe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sponsor /sponsor
COPY --from=probe /bin/wget /usr/local/bin/wget
COPY --from=build --chown=65532:65532 /out/state /var/lib/sponsor
# nonroot (65532) of distroless; numeric, so Kubernetes' runAsNonRoot can
# verify it without reading /etc/passwd.
USER 65532:65532
ENV SPONSOR_STATE_DIR=/var/lib/sponsor \
    SPONSOR_HTTP=0.0.0.0:8080
VOLUME ["/var/lib/sponsor"]
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/sponsor"]
CMD ["run"]
