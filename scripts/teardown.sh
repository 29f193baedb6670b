#!/usr/bin/env bash
# Deletes what deploy.sh and schedule-warmup.sh created. What is already gone
# is skipped, so a re-run after a partial teardown finishes the job.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<EOF
Usage: $SCRIPT_NAME [options]

Deletes the warmup scheduler job, then the functions ${FUNCTION_NAMES[*]}.
Their container images stay in Artifact Registry (gcf-artifacts) until you
delete them there.

Options override the environment variable named in brackets.
  --project=ID              Google Cloud project [PROJECT] (required)
  --region=REGION           region [REGION] (default $DEFAULT_REGION)
  --job=NAME                scheduler job name [WARMUP_JOB] (default $DEFAULT_WARMUP_JOB)
  --quiet                   pass --quiet to gcloud: delete without asking
  --dry-run                 print the gcloud commands, one per line, and run nothing
  -h, --help                show this help
EOF
}

job=${WARMUP_JOB:-$DEFAULT_WARMUP_JOB}
quiet=()

while (($#)); do
  OPTION_SHIFT=1
  case $1 in
    --job | --job=*) option_value "$@" && job=$OPTION_VALUE ;;
    --quiet) quiet=(--quiet) ;;
    *) common_option "$@" ;;
  esac
  shift "$OPTION_SHIFT"
done

check_project_and_region
check_job_name "$job"

# The job first, so that it never pings a function that is being deleted.
scope=(--project="$PROJECT" --location="$REGION")
run_if_found gcloud scheduler jobs describe "$job" "${scope[@]}" -- \
  gcloud scheduler jobs delete "$job" "${scope[@]}" "${quiet[@]}"

scope=(--project="$PROJECT" --gen2 --region="$REGION")
for name in "${FUNCTION_NAMES[@]}"; do
  run_if_found gcloud functions describe "$name" "${scope[@]}" -- \
    gcloud functions delete "$name" "${scope[@]}" "${quiet[@]}"
done
