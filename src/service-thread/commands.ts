/**
 * The commands whose service runs on the service thread (run.ts): the init hook starts the thread for
 * them before the command is loaded. A test holds this list to the commands that call onServiceThread.
 */
export const SERVICE_THREAD_COMMANDS: ReadonlySet<string> = new Set([
  'app:backup:create',
  'app:backup:download',
  'app:backup:drill',
  'app:backup:export',
  'app:backup:restore',
  'app:backup:schedule:run',
  'app:backup:verify',
])
