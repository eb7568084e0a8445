import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** True when a file can be created (and removed) in `dir`. */
export const canWrite = (dir: string): boolean => {
  const probe = path.join(dir, ".quarry-probe")
  try {
    fs.writeFileSync(probe, "")
    fs.rmSync(probe)
    return true
  } catch {
    return false
  }
}

/**
 * How this process can make a directory it cannot write to. Ordinary users: `chmod 0555`. Root ignores permission
 * bits, so a root process needs the immutable attribute (`chattr +i`, which needs CAP_LINUX_IMMUTABLE and a file
 * system that supports it). Each way is proven by a probe write, not assumed; `undefined` when neither works.
 */
export const lockMethod: "chmod" | "chattr" | undefined = (() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-lock-probe-"))
  try {
    if (process.getuid?.() !== 0) {
      fs.chmodSync(dir, 0o555)
      const locked = !canWrite(dir)
      fs.chmodSync(dir, 0o755)
      return locked ? "chmod" : undefined
    }
    try {
      execFileSync("chattr", ["+i", dir], { stdio: "ignore" })
    } catch {
      return undefined
    }
    const locked = !canWrite(dir)
    execFileSync("chattr", ["-i", dir], { stdio: "ignore" })
    return locked ? "chattr" : undefined
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()

/** Makes `dir` read-only (or writable again) with `lockMethod`. */
export const setReadOnly = (dir: string, readOnly: boolean): void => {
  if (lockMethod === "chmod") fs.chmodSync(dir, readOnly ? 0o555 : 0o755)
  else if (lockMethod === "chattr") execFileSync("chattr", [readOnly ? "+i" : "-i", dir], { stdio: "ignore" })
}
