import type {AgentOptions} from 'node:https'

import {createRequire} from 'node:module'

/** Loads node:https when an agent is first asked about (agentsTakeProxies), not with this module. */
const requireBuiltin = createRequire(import.meta.url)

/**
 * The environment's proxy, as the AWS CLI, curl and most tools take it: HTTPS_PROXY (HTTP_PROXY for
 * plain HTTP) names it, and NO_PROXY the hosts to reach directly. Node.js's agents tunnel through it
 * when given it as `proxyEnv` (22.21 and 24.5 on); a plugin cannot turn that on for its host's
 * process as a whole (NODE_USE_ENV_PROXY is read at start-up), so each agent of ours is given it.
 */
export function proxyOption(): {proxyEnv?: NodeJS.ProcessEnv} {
  return agentsTakeProxies() ? {proxyEnv: process.env} : {}
}

const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']

let agentsTunnel: boolean | undefined
/** Whether this Node.js's agents tunnel through a proxy named in their `proxyEnv` option. */
export function agentsTakeProxies(): boolean {
  if (agentsTunnel === undefined) {
    // Every command loads this module, and few make a request: node:https (TLS with it) costs a thread
    // that loads it about 15 ms and 3 MiB.
    const {Agent} = requireBuiltin('node:https') as typeof import('node:https')
    agentsTunnel = Object.getOwnPropertySymbols(
      new Agent({proxyEnv: {HTTPS_PROXY: 'http://127.0.0.1:9'}} as AgentOptions),
    ).some((symbol) => symbol.description === 'kProxyConfig')
  }

  return agentsTunnel
}

/**
 * For a request that got no answer (`what`: "requests to S3"): the proxy it went through, or the one it
 * could not use.
 */
export function proxyHint(what: string): string {
  const variable = PROXY_VARIABLES.find((name) => process.env[name])
  if (variable === undefined) return ''
  return agentsTakeProxies()
    ? ` ${what[0].toUpperCase()}${what.slice(1)} go through the proxy that ${variable} names (NO_PROXY lists the hosts that do not): check it too.`
    : ` ${variable} is set, but Node.js ${process.version} sends ${what} without a proxy: run the command on Node.js 22 or 24, which use it.`
}
