# shellcheck shell=bash
# shellcheck disable=SC2034 # its constants and outputs are read by the scripts that source it
# Shared by deploy.sh, schedule-warmup.sh and teardown.sh: option parsing,
# validation, and running gcloud (or, with --dry-run, printing what would run).
#
# Every check happens before the first gcloud command, so bad input never
# leaves a half-made deployment behind.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT_NAME=${0##*/}

# The names index.ts registers; each becomes its own Cloud Run service.
# deploy.sh deploys the first three, deploy-storage.sh the last.
FUNCTION_NAMES=(removeBackground warmup health removeBackgroundFromStorage)
# The function the scheduled warmup must reach: only its own instances serve removals.
SERVING_FUNCTION=removeBackground
DEFAULT_REGION=us-central1
DEFAULT_WARMUP_JOB=detourage-warmup
# The account README's prerequisites create for the warmup job: schedule-warmup.sh
# signs as it, and a public deployment accepts its token, unless told otherwise.
DEFAULT_WARMER_NAME=detourage-warmer

DRY_RUN=false
PROJECT=${PROJECT:-}
REGION=${REGION:-$DEFAULT_REGION}

# Bad input: exit 2 and say how to get help.
die() {
  printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
  printf 'Run %s --help for usage.\n' "$SCRIPT_NAME" >&2
  exit 2
}

# A problem that no option fixes: exit 1.
fail() {
  printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

note() {
  printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
}

# Sets OPTION_VALUE and OPTION_SHIFT for both `--name=value` and `--name value`.
option_value() {
  if [[ $1 == *=* ]]; then
    OPTION_VALUE=${1#*=}
    OPTION_SHIFT=1
  elif (($# >= 2)) && [[ $2 != --* ]]; then
    OPTION_VALUE=$2
    OPTION_SHIFT=2
  else
    die "$1 needs a value"
  fi
}

# Options every script takes; anything else unknown is an error. Each script's
# own `usage` function is what --help prints.
common_option() {
  OPTION_SHIFT=1
  case $1 in
    --project | --project=*) option_value "$@" && PROJECT=$OPTION_VALUE ;;
    --region | --region=*) option_value "$@" && REGION=$OPTION_VALUE ;;
    --dry-run) DRY_RUN=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown option: $1" ;;
  esac
}

# check_project_id LABEL VALUE
check_project_id() {
  # Project IDs are lower case; a domain-scoped one has the form example.com:name.
  [[ $2 =~ ^[a-z][a-z0-9.:-]*[a-z0-9]$ ]] || die "invalid $1: '$2'"
}

check_project_and_region() {
  [[ -n $PROJECT ]] || die "no project: pass --project=ID or set PROJECT"
  check_project_id 'project ID' "$PROJECT"
  [[ $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "invalid region: '$REGION' (expected a name like us-central1)"
}

# check_service_account_email LABEL VALUE: no space, comma or semicolon, so
# that a list of them survives gcloud's list syntax.
check_service_account_email() {
  [[ $2 =~ ^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]+$ ]] || die "invalid $1: '$2'"
}

# Sets DEFAULT_WARMER_ACCOUNT to the email of $DEFAULT_WARMER_NAME in $PROJECT,
# or to nothing for a domain-scoped project, whose account emails are not
# derived here.
default_warmer_account() {
  if [[ $PROJECT == *:* ]]; then
    DEFAULT_WARMER_ACCOUNT=''
  else
    DEFAULT_WARMER_ACCOUNT=$DEFAULT_WARMER_NAME@$PROJECT.iam.gserviceaccount.com
  fi
}

check_job_name() {
  [[ $1 =~ ^[A-Za-z0-9_-]{1,500}$ ]] || die "invalid scheduler job name: '$1' (letters, digits, - and _ only)"
}

# check_integer VAR LABEL MIN MAX: checks VAR's value and writes it back in
# plain decimal, since arithmetic would read a leading zero as octal.
check_integer() {
  local -n checked=$1
  local label=$2 min=$3 max=$4
  [[ $checked =~ ^[0-9]{1,15}$ ]] || die "$label must be a whole number, got '$checked'"
  checked=$((10#$checked))
  ((checked >= min && checked <= max)) || die "$label must be between $min and $max, got $checked"
}

# parse_boolean VAR LABEL VALUE: sets VAR to true or false.
parse_boolean() {
  local -n parsed=$1
  case ${3,,} in
    true | 1 | yes) parsed=true ;;
    false | 0 | no | '') parsed=false ;;
    *) die "$2 must be true or false, got '$3'" ;;
  esac
}

# memory_mib LABEL VALUE: sets MEMORY_MIB. Units as `gcloud functions deploy
# --memory` takes them for 2nd gen (k, M, G, Ki, Mi, Gi; a trailing b/B allowed).
memory_mib() {
  local label=$1 value=$2
  [[ $value =~ ^([1-9][0-9]{0,10})([kKMG]i?)[bB]?$ ]] ||
    die "$label must be a size like 512Mi, 2Gi or 2048M, got '$value'"
  local -i number=${BASH_REMATCH[1]} unit_bytes
  case ${BASH_REMATCH[2]} in
    k | K) unit_bytes=1000 ;;
    ki | Ki) unit_bytes=1024 ;;
    M) unit_bytes=$((1000 ** 2)) ;;
    Mi) unit_bytes=$((1024 ** 2)) ;;
    G) unit_bytes=$((1000 ** 3)) ;;
    Gi) unit_bytes=$((1024 ** 3)) ;;
  esac
  MEMORY_MIB=$((number * unit_bytes / 1024 ** 2))
  ((MEMORY_MIB >= 128 && MEMORY_MIB <= 32768)) || die "$label must be between 128Mi and 32Gi, got '$value'"
}

# cpu_millis LABEL VALUE: sets CPU_MILLIS. Cloud Run takes 0.08 to 1 in steps
# of 0.001, or a whole 1, 2, 4, 6 or 8.
cpu_millis() {
  local label=$1 value=$2
  if [[ $value =~ ^([0-9]*)\.([0-9]{1,3})$ ]]; then
    local fraction=${BASH_REMATCH[2]}000
    CPU_MILLIS=$((10#${BASH_REMATCH[1]:-0} * 1000 + 10#${fraction:0:3}))
  elif [[ $value =~ ^[0-9]+$ ]]; then
    CPU_MILLIS=$((10#$value * 1000))
  else
    die "$label must be a number of CPUs like 0.167, 1 or 2, got '$value'"
  fi
  if ((CPU_MILLIS < 80 || CPU_MILLIS > 8000)) ||
    { ((CPU_MILLIS > 1000)) && [[ ! " 2000 4000 6000 8000 " == *" $CPU_MILLIS "* ]]; }; then
    die "$label must be between 0.08 and 1, or 2, 4, 6 or 8, got '$value'"
  fi
}

# check_tier FUNCTION MEMORY CPU CONCURRENCY: Cloud Run's rules that tie the
# three together, checked here because the API would only refuse them after
# the build has run.
check_tier() {
  local function=$1 memory=$2 cpu=$3 concurrency=$4
  memory_mib "$function memory" "$memory"
  cpu_millis "$function CPU" "$cpu"
  if ((CPU_MILLIS < 1000)); then
    ((concurrency == 1)) || die "$function: below 1 CPU ($cpu) Cloud Run allows concurrency 1 only, got $concurrency"
    ((MEMORY_MIB <= 1024)) || die "$function: more than 1Gi of memory needs at least 1 CPU, got $cpu"
    ((CPU_MILLIS >= 500 || MEMORY_MIB <= 512)) || die "$function: more than 512Mi of memory needs at least 0.5 CPU, got $cpu"
  fi
  local -i max_mib=$((CPU_MILLIS <= 1000 ? 4096 : CPU_MILLIS * 4096 / 1000)) min_mib=0
  ((CPU_MILLIS >= 4000)) && min_mib=2048
  ((CPU_MILLIS >= 6000)) && min_mib=4096
  ((MEMORY_MIB <= max_mib)) || die "$function: $memory is more memory than $cpu CPU allows (at most $((max_mib / 1024))Gi)"
  ((MEMORY_MIB >= min_mib)) || die "$function: $cpu CPUs need at least $((min_mib / 1024))Gi of memory, got $memory"
}

# Placeholders that --dry-run output refers to as shell variables ("$URL").
DRY_RUN_VARIABLES=' '

# Quotes one word so that a shell reads it back unchanged, keeping simple words
# bare and `--flag=` outside the quotes so that the output stays readable.
quote_word() {
  local word=$1
  if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$word"
  elif [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ && $DRY_RUN_VARIABLES == *" ${BASH_REMATCH[1]} "* ]]; then
    printf '"$%s"' "${BASH_REMATCH[1]}"
  elif [[ $word =~ ^([A-Za-z0-9_@%+=:,./-]*)\$([A-Za-z_][A-Za-z0-9_]*)([A-Za-z0-9@%+=:,./-][A-Za-z0-9_@%+=:,./-]*)?$ &&
    $DRY_RUN_VARIABLES == *" ${BASH_REMATCH[2]} "* ]]; then
    # A deferred variable inside a word, such as serviceAccount:$project_number-compute@...
    printf '%s"$%s"%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"
  elif [[ $word =~ ^(--[a-z0-9-]+=)(.*)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    quote_word "${BASH_REMATCH[2]}"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Sets COMMAND_TEXT to the command as one copy-pasteable line.
format_command() {
  local word text=''
  for word in "$@"; do
    text+="${text:+ }$(quote_word "$word")"
  done
  COMMAND_TEXT=$text
}

trace() {
  printf '+ %s\n' "$1" >&2
}

# Marks VAR as known only when the printed commands run: later words "$VAR" print as such.
defer_variable() {
  DRY_RUN_VARIABLES+="$1 "
  printf -v "$1" '$%s' "$1"
}

# run CMD...: runs it, or prints it under --dry-run.
run() {
  format_command "$@"
  if $DRY_RUN; then
    printf '%s\n' "$COMMAND_TEXT"
    return
  fi
  trace "$COMMAND_TEXT"
  "$@"
}

# capture VAR CMD...: sets VAR to what CMD prints.
capture() {
  local name=$1
  shift
  format_command "$@"
  if $DRY_RUN; then
    # shellcheck disable=SC2016 # the output is shell code for the reader to run
    printf '%s=$(%s)\n' "$name" "$COMMAND_TEXT"
    defer_variable "$name"
    return
  fi
  trace "$COMMAND_TEXT"
  local output
  output=$("$@")
  printf -v "$name" '%s' "$output"
}

# choose VAR IF_OK IF_FAILED CMD...: sets VAR by whether CMD succeeds.
choose() {
  local name=$1 if_ok=$2 if_failed=$3
  shift 3
  format_command "$@"
  if $DRY_RUN; then
    printf 'if %s >/dev/null 2>&1; then %s=%s; else %s=%s; fi\n' "$COMMAND_TEXT" "$name" "$if_ok" "$name" "$if_failed"
    defer_variable "$name"
    return
  fi
  trace "$COMMAND_TEXT"
  if "$@" >/dev/null 2>&1; then
    printf -v "$name" '%s' "$if_ok"
  else
    printf -v "$name" '%s' "$if_failed"
  fi
}

# run_if_found CHECK... -- CMD...: runs CMD only when CHECK succeeds, so that
# deleting what is already gone is not an error.
run_if_found() {
  local -a check=()
  while [[ $1 != -- ]]; do
    check+=("$1")
    shift
  done
  shift
  format_command "${check[@]}"
  local check_text=$COMMAND_TEXT
  format_command "$@"
  if $DRY_RUN; then
    printf 'if %s >/dev/null 2>&1; then %s; fi\n' "$check_text" "$COMMAND_TEXT"
    return
  fi
  trace "$check_text"
  local error
  if ! error=$("${check[@]}" 2>&1 >/dev/null); then
    note "skipped, describe failed: ${error%%$'\n'*}"
    return
  fi
  trace "$COMMAND_TEXT"
  "$@"
}
