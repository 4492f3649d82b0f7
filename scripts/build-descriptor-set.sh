#!/usr/bin/env bash
# Builds gen/descriptor.binpb, the FileDescriptorSet the kernel serves through gRPC server
# reflection: the kernel API, plus the standard protos operators' tools need to render
# everything the kernel sends — grpc.health.v1 and google.rpc's Status/ErrorInfo/… (so that
# `buf curl` and `grpcurl` decode rich error details). Those come from packages
# (grpc-health-check, google-proto-files), never from hand-copied files. Serialized
# FileDescriptorSets concatenate into one set (repeated field), so `cat` merges them.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf=node_modules/.bin/buf
rpc=node_modules/google-proto-files
$buf build -o "$tmp/kernel.binpb"
$buf build "$rpc" --path "$rpc/google/rpc/status.proto" --path "$rpc/google/rpc/error_details.proto" -o "$tmp/rpc.binpb"
$buf build node_modules/grpc-health-check/proto -o "$tmp/health.binpb"
cat "$tmp/kernel.binpb" "$tmp/rpc.binpb" "$tmp/health.binpb" > gen/descriptor.binpb
