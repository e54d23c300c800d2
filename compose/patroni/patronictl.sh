#!/bin/sh
# patronictl for operators (`docker-compose exec pg-1 patronictl list`, `... switchover`): Debian's,
# with this image's configuration and the REST API's password, which `docker-compose exec` does not
# inherit from the entrypoint (it is POSTGRES_PASSWORD, in the container's environment).
set -eu
export PATRONI_RESTAPI_PASSWORD="${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
exec /usr/bin/patronictl -c /etc/patroni/patroni.yml "$@"
