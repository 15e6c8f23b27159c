#!/usr/bin/env bash
# Installs what failoverd needs on a fresh Debian 12 machine (run as root): PostgreSQL 15, pgBackRest,
# the client and SQLite libraries, and the unprivileged OS user that runs PostgreSQL (initdb refuses root).
set -euo pipefail
packages=(postgresql-15 postgresql-client-15 pgbackrest libpq-dev libsqlite3-dev sqlite3 pkg-config util-linux
  stunnel4 curl openssl python3-venv etcd-server
  # nft: PatroniNetworkTests put a REJECT filter in front of a test namespace's servers.
  nftables
  # The two-data-center lab (failoverd lab up): an sshd per site namespace, ssh for the SSH driver, sudo for
  # the login user to run PostgreSQL's tools as the OS user, iproute2 for namespaces, veths and the bridge.
  openssh-server openssh-client sudo iproute2
  # The lab's systemd sites: a real `systemd --user` manager per host (systemd is not init on these machines).
  systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a default cluster on port 5432 when postgresql-15 is installed; failoverd does not use it.
# It has no home: /var/lib/failoverd is root's state directory (journal, run lock, sandbox manifests), which
# the PostgreSQL OS user must never own or write.
user=failoverd
state=/var/lib/failoverd
if ! id "$user" >/dev/null 2>&1; then
  echo "setup: creating OS user $user"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
elif [ "$(getent passwd "$user" | cut -d: -f6)" = "$state" ]; then
  echo "setup: OS user $user had $state as its home; moving it to /nonexistent ($state is root's state directory)"
  if ! usermod --home /nonexistent "$user"; then
    # usermod refuses while the user runs processes (a PostgreSQL server). Safe meanwhile: failoverd refuses
    # a state directory that it does not own or that others can write.
    echo "setup: warning: run \`usermod --home /nonexistent $user\` once $user runs no process" >&2
  fi
fi
if [ -d "$state" ] && [ "$(stat -c %U "$state")" != root ]; then
  # A home made by `useradd --create-home` holds only copies of /etc/skel: nothing of anyone's.
  for f in "$state"/.[!.]* "$state"/*; do
    [ -f "$f" ] && [ ! -L "$f" ] && cmp -s "$f" "/etc/skel/$(basename "$f")" && rm -f "$f"
  done
  if [ -z "$(ls -A "$state")" ]; then
    echo "setup: removing the empty $state owned by $(stat -c %U "$state"); failoverd recreates it root-owned, 0700"
    rmdir "$state"
  else
    echo "setup: $state is owned by $(stat -c %U "$state") and not empty; failoverd refuses it as its state directory." >&2
    echo "setup: move it aside (mv $state $state.old) and run setup again." >&2
    exit 1
  fi
fi
# ensure_venv DIR PACKAGE VERSION EXECUTABLE PIP-ARGS...: a virtual environment built on Debian's python3 (so
# that the unprivileged OS user can run it) holding PACKAGE at VERSION; rebuilt when it is missing, built
# on another python or holds another version.
ensure_venv() {
  local dir=$1 package=$2 version=$3 executable=$4
  shift 4
  if [ ! -x "$dir/bin/$executable" ] || [ "$(readlink -f "$dir/bin/python3")" != "$(readlink -f /usr/bin/python3)" ] \
    || ! "$dir/bin/python3" -c "import importlib.metadata as m, sys; sys.exit(m.version('$package') != '$version')" 2>/dev/null; then
    echo "setup: installing $package $version into $dir"
    rm -rf "$dir"
    /usr/bin/python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  fi
}
# The sandbox's S3 endpoint (a test stand-in for a bucket): moto's server from PyPI.
ensure_venv /opt/failoverd-venv moto 5.1.22 moto_server "moto[server]==5.1.22"
# Patroni sites in the sandbox: Patroni 4.1 from PyPI (Debian's 3.0.2 demotes a cluster with an immediate
# stop), with the etcd3 client and psycopg2; etcd comes from Debian above.
ensure_venv /opt/failoverd-patroni patroni 4.1.5 patroni "patroni[etcd3]==4.1.5" psycopg2-binary==2.9.13
command -v swift >/dev/null || { echo "setup: swift is not on PATH (expected /opt/swift/usr/bin)"; exit 1; }
