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
# nft: NetworkPolicy is programmed into podroute's own nftables table.
RUN apt-get update && apt-get install -y --no-install-recommends nftables && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/podrouted"]
