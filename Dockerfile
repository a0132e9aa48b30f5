# The podroute image used by manifests/04-daemonset.yaml: podrouted, the
# podroute CLI and the podroute-cni plugin (copied to the host by the
# DaemonSet's init container).
#   docker build -t ghcr.io/podroute/podroute:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/podrouted ./cmd/podroute ./cmd/podroute-cni

FROM debian:bookworm-slim
COPY --from=build /out/ /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/podrouted"]
