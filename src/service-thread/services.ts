import {BackupContext} from '../services/context.js'
import {CreateOptions, takeBackup} from '../services/create.js'
import {downloadBackup, DownloadOptions} from '../services/download.js'
import {drillBackup, DrillOptions} from '../services/drill.js'
import {exportBackups, ExportOptions} from '../services/export.js'
import {restoreBackup, RestoreConfirmation, RestoreOptions} from '../services/restore.js'
import {runScheduleTick} from '../services/schedule.js'
import {verifyAllBackups, verifyBackup, VerifyOptions} from '../services/verify.js'

/** What a service on the thread may ask of the command that started it. */
export interface ThreadCaller {
  /** Asks the person to confirm (the main thread has the terminal); throws if they do not. */
  confirm(confirmation: RestoreConfirmation): Promise<void>
  /** The context of another environment of the same config (`restore --to-env`). */
  contextOf(environment: string): Promise<BackupContext>
}

/**
 * The services that run on the service thread (see run.ts): those that stream a backup's data. Each
 * takes the context, built on that thread, and options that cross from the main thread, so plain data.
 */
export const threadServices = {
  create: (context: BackupContext, options: CreateOptions & {notify?: boolean}) => takeBackup(context, options),
  download: (context: BackupContext, options: DownloadOptions & {cwd: string}) =>
    downloadBackup(context, options.cwd, options),
  drill: (context: BackupContext, options: DrillOptions) => drillBackup(context, options),
  export: (context: BackupContext, options: ExportOptions & {cwd: string}) =>
    exportBackups(context, options.cwd, options),
  restore: async (
    context: BackupContext,
    options: RestoreOptions & {confirm?: string; prompt: boolean; toEnvironment?: string},
    caller: ThreadCaller,
  ) =>
    restoreBackup(
      context,
      options.toEnvironment === undefined ? context : await caller.contextOf(options.toEnvironment),
      options,
      (confirmation) => caller.confirm(confirmation),
    ),
  'schedule run': (context: BackupContext, options: {drill?: boolean}) => runScheduleTick(context, undefined, options),
  verify: (context: BackupContext, options: VerifyOptions & {reference: string}) =>
    verifyBackup(context, options.reference, options),
  'verify all': (context: BackupContext, options: VerifyOptions) => verifyAllBackups(context, options),
}

export type ThreadServices = typeof threadServices
export type ThreadServiceName = keyof ThreadServices
export type ThreadServiceOptions<Name extends ThreadServiceName> = Parameters<ThreadServices[Name]>[1]
export type ThreadServiceResult<Name extends ThreadServiceName> = Awaited<ReturnType<ThreadServices[Name]>>
