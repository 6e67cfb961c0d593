# Sourced by the set-up scripts: run_step <name> <command...> runs a step with its output in
# $log_dir/<name>.log; on failure it prints "$step_failure_prefix failed at step: <name>", the end
# of the log, and exits 1. The caller sets log_dir, step_failure_prefix and step_log_tail_lines.
run_step() {
  local name=$1 log=$log_dir/$1.log
  shift
  if ! "$@" >"$log" 2>&1; then
    printf '%s failed at step: %s (see %s)\n' "$step_failure_prefix" "$name" "$log"
    tail -n "${step_log_tail_lines:-15}" "$log" | sed 's/^/    /'
    exit 1
  fi
}
