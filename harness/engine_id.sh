#!/bin/sh
# engine_id.sh FILE... — print a C header defining HARNESS_ENGINE_SOURCES_SHA256, the SHA-256 of
# the concatenated files (the engine's sources): the engine build in the prediction cache key.
set -e
h=$(cat "$@" | sha256sum | cut -c1-64)
printf '#define HARNESS_ENGINE_SOURCES_SHA256 "%s"\n' "$h"
