/**
 * Messages name commands the way the `divio` CLI spells them ("divio app backup list"). Inside another
 * oclif host the binary and the topic separator differ ("heroku app:backup:list"): this rewrites every
 * such mention for the host that runs the plugin. With `divio` and a space it changes nothing.
 */
const MENTION =
  /\bdivio app backup(?: (schedule (?:run|show)|create|delete|download|export|info|init|list|pin|prune|restore|retention|unpin|verify))?\b/g

export function spellCommands(text: string, host: {bin: string; topicSeparator: string}): string {
  if (host.bin === 'divio' && host.topicSeparator === ' ') return text
  return text.replaceAll(MENTION, (_mention, command: string | undefined) =>
    [host.bin, ['app', 'backup', ...(command ? command.split(' ') : [])].join(host.topicSeparator)].join(' '),
  )
}
