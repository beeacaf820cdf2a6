import {z} from 'zod'

import {isValidTimeZone} from '../domain/retention.js'

/** Names become folder names in the store, so they are kept to a portable alphabet. */
const name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/i, 'use letters, digits, "-" and "_" (at most 63 characters)')

const count = z.number().int().min(0)

export const onDemandRetentionSchema = z
  .object({
    days: count.default(30),
    keepOlder: count.default(3),
  })
  .strict()
  .refine((policy) => policy.days + policy.keepOlder > 0, {
    message: 'this policy keeps nothing; set "days" or "keepOlder" above 0',
  })

export const scheduledRetentionSchema = z
  .object({
    daily: count.default(7),
    monthly: count.default(12),
    weekly: count.default(4),
    yearly: count.default(0),
  })
  .strict()
  .refine((policy) => policy.daily + policy.weekly + policy.monthly + policy.yearly > 0, {
    message: 'this policy keeps nothing; set at least one of daily, weekly, monthly or yearly above 0',
  })

export const retentionSchema = z
  .object({
    /**
     * Whether `create` and the scheduled tick apply the policy to their trigger's backups once theirs
     * is committed. `false` leaves deleting to `prune`, run by a machine that may delete: a create
     * machine with append-only store credentials, which a compromised app server cannot wipe with.
     */
    afterBackup: z.boolean().default(true),
    incompleteGraceHours: z.number().positive().default(24),
    onDemand: onDemandRetentionSchema.default({days: 30, keepOlder: 3}),
    scheduled: scheduledRetentionSchema.default({daily: 7, monthly: 12, weekly: 4, yearly: 0}),
  })
  .strict()

/** An http(s) URL; the message never repeats it, since hook URLs carry secrets. */
const httpUrl = z.string().refine((text) => {
  try {
    return ['http:', 'https:'].includes(new URL(text).protocol)
  } catch {
    return false
  }
}, 'use an http:// or https:// URL')

export const environmentSchema = z
  .object({
    /**
     * Media in S3: what a backup does with an object that S3 serves only after a restore request
     * (Glacier, Deep Archive): `fail` (the default) or `skip` it, naming it (docs/s3.md).
     */
    archivedMedia: z.enum(['fail', 'skip']).optional(),
    /**
     * Count every table's rows, and hash the schema, in the dump's snapshot and record them in the
     * manifest for drills (default true). Off for databases where counting costs too much.
     */
    countRows: z.boolean().optional(),
    database: z.string().min(1).optional(),
    /** `drill`'s own check of the restored database: a query whose first value must be there (and be `expect`). */
    drill: z
      .object({
        /** `schedule run` drills the newest scheduled backup this often (without --drill). */
        every: z.enum(['daily', 'weekly']).optional(),
        expect: z.string().optional(),
        query: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    encryption: z
      .object({
        recipients: z.array(z.string().min(1)).min(1, 'list at least one age1… recipient').optional(),
        /** Writer ids (divio-writer1…) whose signed backups are trusted (docs/keys.md). */
        writers: z.array(z.string().min(1)).min(1, 'list at least one divio-writer1… id').optional(),
      })
      .strict()
      .optional(),
    media: z.string().min(1).optional(),
    /**
     * How media is stored: `tar` (one encrypted media.tar a backup) or `packs` (incremental: content
     * stored once in packs: docs/storage.md).
     */
    mediaFormat: z.enum(['packs', 'tar']).optional(),
    /** Hooks told of start, success, failure and drill-failed (docs/monitoring.md#notifications). */
    notify: z
      .object({
        command: z.string().min(1).optional(),
        events: z
          .array(z.enum(['start', 'success', 'failure', 'drill-failed']))
          .min(1)
          .optional(),
        ping: httpUrl.optional(),
        webhook: httpUrl.optional(),
      })
      .strict()
      .optional(),
    retention: retentionSchema.default({
      afterBackup: true,
      incompleteGraceHours: 24,
      onDemand: {days: 30, keepOlder: 3},
      scheduled: {daily: 7, monthly: 12, weekly: 4, yearly: 0},
    }),
    schedule: z
      .object({
        at: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'use 24-hour HH:MM, for example "02:00"'),
        timezone: z
          .string()
          .min(1)
          .refine((zone) => isValidTimeZone(zone), 'not an IANA time zone; use a name such as "Europe/Zurich" or "UTC"')
          .default('UTC'),
      })
      .strict()
      .optional(),
    /** Unset: DIVIO_BACKUP_STORE, else ./.divio/backups (the zero-config default). */
    store: z.string().min(1).optional(),
  })
  .strict()

/**
 * Every field is optional: what a file leaves out keeps its zero-config default (see load.ts), so that
 * `{"environments": {"live": {"schedule": {"at": "02:00"}}}}` is a whole config.
 */
export const configSchema = z
  .object({
    $schema: z.string().optional(),
    /** Unset: the app folder's name. */
    app: name.optional(),
    defaultEnvironment: name.optional(),
    /** Unset: one environment, `local`, with every default. */
    environments: z
      .record(name, environmentSchema)
      .refine((environments) => Object.keys(environments).length > 0, {
        message: 'define at least one environment, or leave "environments" out for the default one',
      })
      .optional(),
  })
  .strict()

export type ConfigFile = z.infer<typeof configSchema>
export type EnvironmentFile = z.infer<typeof environmentSchema>
export type RetentionPolicy = z.infer<typeof retentionSchema>
