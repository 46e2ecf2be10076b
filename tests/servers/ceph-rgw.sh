#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with a RADOS Gateway on loopback, for spare's S3 tests.
#
#   tests/servers/ceph-rgw.sh up DIR PORT   install Ceph if missing, start mon + osd + radosgw under
#                                           DIR, create an S3 user, wait for a signed request, and
#                                           write DIR/env (SPARE_TEST_S3_URL and keys) to source
#   tests/servers/ceph-rgw.sh down DIR      stop exactly the daemons started under DIR (by their
#                                           recorded pids, never by name) and remove DIR
#
# One monitor (msgr2 only), one memstore OSD, pool size 1, cephx off, no manager: about 15 s and
# 450 MB. Facts this relies on were measured on Debian 12 with Ceph 16.2 (see issue 4).
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common ceph-base)
ACCESS_KEY=spare-test-access
SECRET_KEY=spare-test-secret-0123456789abcdef

die() { echo "ceph-rgw.sh: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install() {
    command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd \
        >/dev/null && return
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$((limit * 5))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "timed out waiting for $what (logs in $DIR/log)"
}

up() {
    [ -n "$PORT" ] || die "usage: ceph-rgw.sh up DIR PORT"
    [ -e "$DIR/env" ] && die "$DIR already holds a cluster: run 'down' first"
    install
    mkdir -p "$DIR"/{mon,osd,run,log,rgw}
    DIR=$(cd "$DIR" && pwd)
    local fsid mon_port conf=$DIR/ceph.conf
    fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    mon_port=$(free_port)
    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms bind msgr2 = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 4294967296
osd crush chassis type = 0
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$name
osd data = $DIR/osd/\$name
keyring = $DIR/keyring
[client.rgw.spare]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
auth client required = none
ms mon client mode = crc
CONF
    ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$DIR/monmap" >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
    ceph-mon -c "$conf" -i a
    wait_for 30 "the monitor" timeout 5 ceph -c "$conf" mon stat
    local osd
    osd=$(timeout 20 ceph -c "$conf" osd create)
    mkdir -p "$DIR/osd/osd.$osd"
    ceph-osd -c "$conf" -i "$osd" --mkfs >"$DIR/log/osd-mkfs.log" 2>&1
    ceph-osd -c "$conf" -i "$osd"
    wait_for 60 "the OSD" sh -c "timeout 5 ceph -c '$conf' osd stat | grep -q '1 up'"
    radosgw -c "$conf" -n client.rgw.spare
    wait_for 60 "radosgw" timeout 10 radosgw-admin -c "$conf" user list
    radosgw-admin -c "$conf" user create --uid=spare --display-name=spare \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
    wait_for 90 "a signed S3 request" python3 - "http://127.0.0.1:$PORT" <<'PY'
import sys
import boto3
client = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="spare-test-access",
                      aws_secret_access_key="spare-test-secret-0123456789abcdef",
                      region_name="us-east-1")
client.list_buckets()
PY
    cat >"$DIR/env" <<ENV
export SPARE_TEST_S3_URL=http://127.0.0.1:$PORT
export SPARE_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export SPARE_TEST_S3_SECRET_KEY=$SECRET_KEY
ENV
    echo "ceph-rgw.sh: radosgw answers on http://127.0.0.1:$PORT (source $DIR/env)"
}

down() {
    [ -d "$DIR" ] || return 0
    local pidfile pid
    for pidfile in "$DIR"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
    done
    for pidfile in "$DIR"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$DIR"
}

[ $# -ge 2 ] || die "usage: ceph-rgw.sh up DIR PORT | down DIR"
COMMAND=$1 DIR=$2 PORT=${3:-}
case $COMMAND in
    up) up ;;
    down) down ;;
    *) die "usage: ceph-rgw.sh up DIR PORT | down DIR" ;;
esac
