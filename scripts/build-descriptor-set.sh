#!/usr/bin/env bash
# Builds gen/descriptor.binpb, the FileDescriptorSet the kernel serves through gRPC server
# reflection: the kernel API with its imports — among them google/rpc/error_details.proto (the
# committed copy in proto/google/), which every service file depends on through
# axis/kernel/common/v1/errors.proto, so `buf curl` and `grpcurl` decode ErrorInfo, BadRequest,
# RetryInfo, … — plus google.rpc.Status (from google-proto-files) and grpc.health.v1 (from
# grpc-health-check). Serialized FileDescriptorSets concatenate into one set (repeated field),
# so `cat` merges them; each file is taken once.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf=node_modules/.bin/buf
rpc=node_modules/google-proto-files
$buf build -o "$tmp/kernel.binpb"
# status.proto alone (its import, google/protobuf/any.proto, is not in the kernel image).
$buf build "$rpc" --path "$rpc/google/rpc/status.proto" -o "$tmp/rpc.binpb"
$buf build node_modules/grpc-health-check/proto -o "$tmp/health.binpb"
cat "$tmp/kernel.binpb" "$tmp/rpc.binpb" "$tmp/health.binpb" > gen/descriptor.binpb
