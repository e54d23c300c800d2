#!/bin/sh
# Starts Alertmanager on alertmanager.yml (next to this script) with the receivers' URLs read from
# secret files: Alertmanager 0.25 (Debian's, and the compose image's) cannot read a webhook URL from
# a file itself. It writes the rendered configuration to a private file and execs Alertmanager with
# --config.file set to it and every argument given here, so Alertmanager keeps this process's pid.
# POSIX sh builtins only: it runs in the public prom/alertmanager image (busybox sh) and on Debian
# (dash); the secrets never appear on a command line. Refuses to start, saying which and why, when
# a URL file is missing, empty, has more than one line, or is not an http(s) URL.
#
#   ALERTMANAGER_PAGER_URL_FILE   the pager's webhook URL (severity="page")
#                                 default /run/secrets/alertmanager_pager_url
#   ALERTMANAGER_TICKET_URL_FILE  the ticket queue's webhook URL (severity="ticket", and the default)
#                                 default /run/secrets/alertmanager_ticket_url
#   ALERTMANAGER_CONFIG_OUT       where the rendered configuration is written (mode 600), in a
#                                 writable directory; default /tmp/alertmanager.yml
#   ALERTMANAGER_TEMPLATE         default: alertmanager.yml in this script's directory
#   ALERTMANAGER_BIN              default /bin/alertmanager (the image's) if present, else
#                                 prometheus-alertmanager (Debian's, from PATH)
#   ALERTMANAGER_RENDER_ONLY=1    write the configuration and exit 0 without starting Alertmanager
#                                 (the local stack re-renders before a SIGHUP reload)
set -eu

die() {
  printf 'alertmanager start.sh: %s\n' "$*" >&2
  exit 1
}

case $0 in
  */*) here=${0%/*} ;;
  *) here=. ;;
esac
template=${ALERTMANAGER_TEMPLATE:-$here/alertmanager.yml}
pager_file=${ALERTMANAGER_PAGER_URL_FILE:-/run/secrets/alertmanager_pager_url}
ticket_file=${ALERTMANAGER_TICKET_URL_FILE:-/run/secrets/alertmanager_ticket_url}
out=${ALERTMANAGER_CONFIG_OUT:-/tmp/alertmanager.yml}
bin=${ALERTMANAGER_BIN:-}
if [ -z "$bin" ]; then
  if [ -x /bin/alertmanager ]; then bin=/bin/alertmanager; else bin=prometheus-alertmanager; fi
fi
# The placeholders of alertmanager.yml, each replaced by one secret.
pager_placeholder=http://alertmanager-pager-url.invalid/
ticket_placeholder=http://alertmanager-ticket-url.invalid/

for arg in "$@"; do
  case $arg in
    --config.file | --config.file=*) die "do not pass $arg: this script sets --config.file to the file it renders ($out)" ;;
  esac
done

tab=$(printf '\t')
cr=$(printf '\r')

# read_url NAME FILE VARIABLE: prints the URL in FILE, trimmed; dies unless it is one http(s) URL.
read_url() {
  [ -f "$2" ] || die "no $1 URL: $2 does not exist (mount the secret alertmanager_$1_url there, or set $3 to the file holding the URL)"
  [ -r "$2" ] || die "no $1 URL: $2 is not readable by uid $(id -u 2>/dev/null || echo '?') (make the secret file readable by Alertmanager's user)"
  url=
  more=
  {
    IFS=" $tab$cr" read -r url || :
    while IFS=" $tab$cr" read -r more || [ -n "$more" ]; do
      [ -z "$more" ] || die "the $1 URL in $2 has more than one line: put only the URL in it"
    done
  } <"$2"
  [ -n "$url" ] || die "the $1 URL in $2 is empty: put the $1 receiver's webhook URL in it"
  case $url in
    *" "* | *"$tab"* | *"$cr"*) die "the $1 URL in $2 contains whitespace: percent-encode it" ;;
  esac
  case $url in
    http://?* | https://?*) ;;
    *) die "the $1 URL in $2 does not start with http:// or https://" ;;
  esac
  printf '%s' "$url"
}

# yaml_quoted TEXT: TEXT as a single-quoted YAML scalar (where only ' is special: doubled).
yaml_quoted() {
  rest=$1
  quoted=
  while :; do
    case $rest in
      *"'"*)
        quoted="$quoted${rest%%"'"*}''"
        rest=${rest#*"'"}
        ;;
      *) break ;;
    esac
  done
  printf "'%s%s'" "$quoted" "$rest"
}

pager_url=$(read_url pager "$pager_file" ALERTMANAGER_PAGER_URL_FILE)
ticket_url=$(read_url ticket "$ticket_file" ALERTMANAGER_TICKET_URL_FILE)
pager_yaml=$(yaml_quoted "$pager_url")
ticket_yaml=$(yaml_quoted "$ticket_url")

[ -r "$template" ] || die "cannot read the template $template (set ALERTMANAGER_TEMPLATE)"
case $out in
  */*) out_dir=${out%/*} ;;
  *) out_dir=. ;;
esac
[ -d "${out_dir:-/}" ] && [ -w "${out_dir:-/}" ] || die "cannot write $out: ${out_dir:-/} is not a writable directory (set ALERTMANAGER_CONFIG_OUT)"

# Line by line, so a URL's characters are never read as a pattern or a command.
umask 077
pager_seen=0
ticket_seen=0
{
  printf '# Written by %s from %s; do not edit (it holds the receivers'"'"' URLs).\n' "$0" "$template"
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      *"$pager_placeholder"*)
        line="${line%%"$pager_placeholder"*}$pager_yaml${line#*"$pager_placeholder"}"
        pager_seen=$((pager_seen + 1))
        ;;
      *"$ticket_placeholder"*)
        line="${line%%"$ticket_placeholder"*}$ticket_yaml${line#*"$ticket_placeholder"}"
        ticket_seen=$((ticket_seen + 1))
        ;;
    esac
    printf '%s\n' "$line"
  done <"$template"
} >"$out" || die "could not write $out"
# The template must have exactly one of each, or a URL would go nowhere or a receiver stay a placeholder.
[ "$pager_seen" -eq 1 ] || die "$template has $pager_seen lines with $pager_placeholder (want 1): the pager URL has no single place"
[ "$ticket_seen" -eq 1 ] || die "$template has $ticket_seen lines with $ticket_placeholder (want 1): the ticket URL has no single place"

printf 'alertmanager start.sh: wrote %s from %s (pager URL from %s, ticket URL from %s)\n' \
  "$out" "$template" "$pager_file" "$ticket_file" >&2
[ "${ALERTMANAGER_RENDER_ONLY:-}" != 1 ] || exit 0
command -v "$bin" >/dev/null 2>&1 || die "no Alertmanager binary \"$bin\" (set ALERTMANAGER_BIN)"
exec "$bin" "--config.file=$out" "$@"
