import * as fs from "node:fs"
import * as os from "node:os"

/** Where a lease holder runs: enough to tell, on the same host, whether it is still alive. */
export interface ProcessIdentity {
  readonly host: string
  readonly pid: number
  /** The start time in clock ticks since boot (`/proc/<pid>/stat`, field 22); null where there is no `/proc`. */
  readonly started: string | null
}

const stat = (pid: number): { readonly state: string; readonly started: string } | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may contain spaces and parentheses: fields are counted after its last ")".
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    const state = fields[0]
    const started = fields[19]
    return state === undefined || started === undefined ? undefined : { state, started }
  } catch {
    return undefined
  }
}

/** This process. */
export const self = (): ProcessIdentity => ({
  host: os.hostname(),
  pid: process.pid,
  started: stat(process.pid)?.started ?? null
})

const exists = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return typeof error === "object" && error !== null && "code" in error && error.code === "EPERM"
  }
}

/**
 * True only when the process is provably gone: it ran on this host and its pid no longer exists, is a zombie, or
 * now belongs to a process that started at another time (the pid was reused). Anything unknown counts as alive.
 */
export const isDead = (holder: ProcessIdentity): boolean => {
  if (holder.host !== os.hostname()) return false
  if (!exists(holder.pid)) return true
  const current = stat(holder.pid)
  if (current === undefined) return false
  if (current.state === "Z" || current.state === "X") return true
  return holder.started !== null && current.started !== holder.started
}
