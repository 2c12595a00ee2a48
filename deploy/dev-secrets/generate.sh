#!/bin/sh
# The compose stack's secrets, made on its first start (the `dev-secrets` service): fresh random values, never in
# git, like `refracture demo`'s tokens. Files that exist are kept: the database volume was initialised with that
# password. `docker compose -f deploy/compose.yaml down -v` drops both volumes, and the next start makes new ones.
#
# Usage: generate.sh FOLDER
set -eu
dir=${1:?usage: generate.sh FOLDER}
# 24 random bytes, URL-safe base64 (32 characters, no padding).
token() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
# Readable by the refracture user (10001) and postgres (70): this is a developer's machine, ports on 127.0.0.1 only.
umask 022
if [ ! -s "$dir/postgres_password" ]; then
    token > "$dir/postgres_password"
fi
if [ ! -s "$dir/refracture_database_url" ]; then
    printf 'postgresql://refracture:%s@postgres:5432/refracture\n' "$(cat "$dir/postgres_password")" \
        > "$dir/refracture_database_url"
fi
if [ ! -s "$dir/refracture_auth_dev_tokens" ]; then
    printf '{"%s": {"sub": "ehr-interface", "client_id": "ehr-interface", "scope": "system/*.read system/*.write"},
 "%s": {"sub": "coordinator.dev", "roles": ["care-coordinator"]},
 "%s": {"sub": "admin.dev", "roles": ["administrator"]}}\n' "$(token)" "$(token)" "$(token)" \
        > "$dir/refracture_auth_dev_tokens"
fi
echo "development bearer tokens (REFRACTURE_AUTH_DEV_TOKENS; the key is the token):"
cat "$dir/refracture_auth_dev_tokens"
