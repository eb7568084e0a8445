/**
 * `deploy/` against the real server: the alert rules pass `promtool check rules` and their unit tests; every probe
 * path, port and setting the Kubernetes manifests and the Dockerfile use is one the built `quarry serve` really has
 * (its `--help` defaults, its OpenAPI document, and a live answer of 200 from each probe).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { parseAllDocuments } from "yaml"
import { createDatabase, dropDatabase, freePort, usePostgres } from "../packages/core/test/postgres.js"
import { call, serve, stop, until } from "./serverProcess.js"
import { makeDir, removeDir, run, start } from "./support.js"

const deploy = path.resolve(import.meta.dirname, "../deploy")

const promtool = (args: ReadonlyArray<string>) => {
  const result = spawnSync("promtool", args, { cwd: deploy, encoding: "utf8" })
  assert.isUndefined(result.error, "promtool is missing: apt-get install prometheus")
  return result
}

interface Probe {
  readonly httpGet: { readonly path: string; readonly port: string }
}

interface Container {
  readonly env: ReadonlyArray<{ readonly name: string; readonly value: string }>
  readonly ports: ReadonlyArray<{ readonly name: string; readonly containerPort: number }>
  readonly startupProbe: Probe
  readonly livenessProbe: Probe
  readonly readinessProbe: Probe
  readonly volumeMounts: ReadonlyArray<{ readonly name: string; readonly mountPath: string }>
}

/** The parts of the manifests the test reads (parsed YAML, typed by hand). */
interface Spec {
  readonly replicas: number
  readonly strategy: { readonly type: string }
  readonly selector: { readonly matchLabels: Record<string, string> } & Record<string, string>
  readonly ports: ReadonlyArray<{ readonly targetPort: string }>
  readonly template: {
    readonly metadata: { readonly annotations: Record<string, string> }
    readonly spec: {
      readonly terminationGracePeriodSeconds: number
      readonly securityContext: { readonly runAsNonRoot: boolean; readonly runAsUser: number }
      readonly containers: ReadonlyArray<Container>
      readonly volumes: ReadonlyArray<{ readonly name: string; readonly persistentVolumeClaim?: { claimName: string } }>
    }
  }
}

/** Every document of every manifest in deploy/kubernetes (or another folder of deploy/). */
const manifests = (folder = "kubernetes"): Array<{ kind: string; metadata: { name: string }; spec: Spec }> =>
  fs.readdirSync(path.join(deploy, folder)).filter((f) => f.endsWith(".yaml")).flatMap((file) =>
    parseAllDocuments(fs.readFileSync(path.join(deploy, folder, file), "utf8")).map((doc) => {
      assert.deepStrictEqual(doc.errors, [], file)
      return doc.toJS()
    })
  )

const one = (kind: string, folder = "kubernetes") => {
  const found = manifests(folder).filter((m) => m.kind === kind)
  assert.strictEqual(found.length, 1, kind)
  return found[0]!
}

/** `1m30s`, `25s`, `2m` to seconds. */
const seconds = (duration: string) => {
  const match = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(duration)
  assert.isNotNull(match, duration)
  return Number(match![1] ?? 0) * 60 + Number(match![2] ?? 0)
}

const adminUrl = usePostgres()

describe("deploy/", () => {
  let dir = ""
  /** The defaults `quarry serve --help` states. */
  let defaults = { port: 0, drainTimeout: "" }

  beforeAll(async () => {
    dir = makeDir()
    const help = await run(["serve", "--help"])
    defaults = {
      port: Number(/QUARRY_PORT\)\. Default: (\d+)\./.exec(help.stdout)?.[1]),
      drainTimeout: /QUARRY_DRAIN_TIMEOUT\)\. Default: (\w+)\./.exec(help.stdout)?.[1] ?? ""
    }
    assert.isAbove(defaults.port, 0, help.stdout)
  })
  afterAll(() => removeDir(dir))

  it("alerts.yml passes promtool check rules, and its unit tests pass promtool test rules", () => {
    const checked = promtool(["check", "rules", "prometheus/alerts.yml"])
    assert.strictEqual(checked.status, 0, `${checked.stdout}${checked.stderr}`)
    const tested = promtool(["test", "rules", "prometheus/alerts.test.yml"])
    assert.strictEqual(tested.status, 0, `${tested.stdout}${tested.stderr}`)
    assert.include(tested.stdout, "SUCCESS")
  })

  it(
    "the Deployment: one replica, Recreate, probes on real routes and the default port, grace > drain timeout, the PVC",
    async () => {
      const deployment = one("Deployment")
      assert.strictEqual(deployment.spec.replicas, 1)
      assert.strictEqual(deployment.spec.strategy.type, "Recreate")
      const pod = deployment.spec.template.spec
      const container = pod.containers[0]
      const env: Record<string, string> = Object.fromEntries(container.env.map((e) => [e.name, e.value]))
      // The port is the server's default (QUARRY_PORT not overridden); probes and the Service use its name.
      assert.notProperty(env, "QUARRY_PORT")
      const http = container.ports.find((p) => p.name === "http")
      assert.strictEqual(http?.containerPort, defaults.port)
      assert.strictEqual(Number(deployment.spec.template.metadata.annotations["prometheus.io/port"]), defaults.port)
      const probes = {
        startupProbe: "/startupz",
        livenessProbe: "/livez",
        readinessProbe: "/readyz"
      } as const
      for (const [probe, route] of Object.entries(probes) as Array<[keyof typeof probes, string]>) {
        assert.strictEqual(container[probe].httpGet.path, route, probe)
        assert.strictEqual(container[probe].httpGet.port, "http", probe)
      }
      const drain = seconds(env.QUARRY_DRAIN_TIMEOUT ?? defaults.drainTimeout)
      assert.isAbove(pod.terminationGracePeriodSeconds, drain)
      assert.strictEqual(pod.securityContext.runAsNonRoot, true)

      // The database on the claim, which exists; the Service and the budget select the pod.
      const pvc = one("PersistentVolumeClaim")
      const data = pod.volumes.find((v) => v.persistentVolumeClaim !== undefined)
      assert.strictEqual(data?.persistentVolumeClaim?.claimName, pvc.metadata.name)
      const mount = container.volumeMounts.find((m) => m.name === data?.name)
      assert.strictEqual(path.posix.dirname(env.QUARRY_DB!), mount?.mountPath)
      const service = one("Service")
      assert.strictEqual(service.spec.ports[0]?.targetPort, "http")
      assert.deepStrictEqual(service.spec.selector, deployment.spec.selector.matchLabels)
      assert.deepStrictEqual(one("PodDisruptionBudget").spec.selector.matchLabels, deployment.spec.selector.matchLabels)

      // Each probe path and the scrape path are routes of the real server, and answer 200 once it has started.
      const server = await serve(path.join(dir, "probes.db"))
      try {
        const spec = (await call(server, "GET", "/openapi.json")).json() as { paths: Record<string, unknown> }
        const routes = [...Object.values(probes), deployment.spec.template.metadata.annotations["prometheus.io/path"]!]
        for (const route of routes) {
          assert.property(spec.paths, route)
          await until(async () => (await call(server, "GET", route)).status === 200, 30_000, route)
        }
      } finally {
        await stop(server)
      }
    },
    60_000
  )

  it("the Dockerfile: multi-stage, a non-root user, quarry serve, HEALTHCHECK on /livez at the default port", () => {
    const dockerfile = fs.readFileSync(path.join(deploy, "Dockerfile"), "utf8").replace(/\\\n/g, " ")
    const instructions = dockerfile.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
    const all = (keyword: string) =>
      instructions.filter((l) => l.startsWith(`${keyword} `)).map((l) => l.slice(keyword.length + 1))
    assert.isAtLeast(all("FROM").length, 2)
    const stages = instructions.map((l, i) => l.startsWith("FROM ") ? i : -1).filter((i) => i >= 0)
    const runtime = instructions.slice(stages.at(-1))
    const user = runtime.find((l) => l.startsWith("USER "))?.slice(5).split(":")[0]
    assert.isDefined(user)
    assert.notInclude(["root", "0"], user)
    assert.deepStrictEqual(all("EXPOSE"), [String(defaults.port)])
    assert.strictEqual(JSON.parse(all("ENTRYPOINT")[0]!).at(-1), "/opt/quarry/dist/bundle/quarry.js")
    assert.deepStrictEqual(JSON.parse(all("CMD")[0]!), ["serve"])
    const healthcheck = all("HEALTHCHECK")[0]!
    assert.include(healthcheck, "/livez")
    assert.include(healthcheck, `'${defaults.port}'`)
    // The Kubernetes user is the image's user.
    assert.strictEqual(String(one("Deployment").spec.template.spec.securityContext.runAsUser), user)
    // The runtime stage runs the CLI that `pnpm deploy` copies: its bundle is where ENTRYPOINT says.
    assert.include(dockerfile, "pnpm --filter @quarry/cli deploy --prod --legacy /out")
    assert.include(dockerfile, "COPY --from=build /out /opt/quarry")
    assert.isTrue(fs.existsSync(path.resolve(deploy, "../.dockerignore")))
  })

  it(
    "kubernetes-cluster/: three --cluster replicas, the runner address from the pod IP, real env names, probes, grace, PostgreSQL",
    async () => {
      const folder = "kubernetes-cluster"
      const deployment = one("Deployment", folder) as unknown as { spec: ClusterSpec }
      assert.strictEqual(deployment.spec.replicas, 3)
      const pod = deployment.spec.template.spec
      const container = pod.containers[0]!
      const env = new Map(container.env.map((e) => [e.name, e]))
      assert.strictEqual(env.get("QUARRY_CLUSTER")?.value, "true")
      assert.strictEqual(env.get("QUARRY_RUNNER_HOST")?.valueFrom?.fieldRef?.fieldPath, "status.podIP")
      const runner = container.ports.find((p) => p.name === "runner")
      assert.strictEqual(String(runner?.containerPort), env.get("QUARRY_RUNNER_PORT")?.value)
      assert.strictEqual(container.ports.find((p) => p.name === "http")?.containerPort, defaults.port)
      // Every variable is one `quarry serve` reads: named in its --help, or one of the few read only from the env.
      const help = (await run(["serve", "--help"])).stdout
      for (const name of env.keys()) {
        if (!["QUARRY_API_TOKEN_FILE", "QUARRY_API_TOKENS", "QUARRY_LEASE_MS"].includes(name)) {
          assert.include(help, name)
        }
      }
      // The database URL and the tokens come from the secrets the example shows.
      const secrets = parseAllDocuments(fs.readFileSync(path.join(deploy, folder, "secret.example.yaml"), "utf8")).map((
        doc
      ) => doc.toJS() as { metadata: { name: string }; stringData: Record<string, string> })
      const url = env.get("QUARRY_DATABASE_URL")?.valueFrom?.secretKeyRef
      const secret = secrets.find((s) => s.metadata.name === url?.name)
      assert.property(secret?.stringData ?? {}, url?.key ?? "url")
      const probes = { startupProbe: "/startupz", livenessProbe: "/livez", readinessProbe: "/readyz" } as const
      for (const [probe, route] of Object.entries(probes) as Array<[keyof typeof probes, string]>) {
        assert.strictEqual(container[probe].httpGet.path, route, probe)
        assert.strictEqual(container[probe].httpGet.port, "http", probe)
      }
      // The grace period covers the preStop pause and the drain.
      const drain = seconds(env.get("QUARRY_DRAIN_TIMEOUT")?.value ?? defaults.drainTimeout)
      assert.isAbove(pod.terminationGracePeriodSeconds, drain + container.lifecycle.preStop.sleep.seconds)
      const api = manifests(folder).find((m) => m.kind === "Service" && m.spec.ports[0]?.targetPort === "http")
      assert.deepStrictEqual(
        api?.spec.selector,
        deployment.spec.selector.matchLabels as unknown as Record<string, string>
      )
      assert.deepStrictEqual(
        one("PodDisruptionBudget", folder).spec.selector.matchLabels,
        deployment.spec.selector.matchLabels
      )
      // PostgreSQL: a StatefulSet on a claim, reached by its Service's name as the example URL says.
      const postgres = one("StatefulSet", folder) as unknown as { spec: { volumeClaimTemplates: Array<unknown> } }
      assert.strictEqual(postgres.spec.volumeClaimTemplates.length, 1)
      const postgresService = manifests(folder).find((m) =>
        m.kind === "Service" && m.metadata.name.includes("postgres")
      )
      assert.strictEqual(new URL(secret!.stringData[url!.key]!).hostname, postgresService?.metadata.name)

      // The same variables start a real runner whose probes answer 200.
      const runnerPort = await freePort()
      const db = await createDatabase(adminUrl())
      const child = start(["serve", "--port", "0", "--json"], {
        env: {
          QUARRY_CLUSTER: "true",
          QUARRY_RUNNER_HOST: "127.0.0.1",
          QUARRY_RUNNER_PORT: String(runnerPort),
          QUARRY_DATABASE_URL: db,
          QUARRY_DRAIN_TIMEOUT: env.get("QUARRY_DRAIN_TIMEOUT")!.value!,
          QUARRY_MAX_ACTIVE_RUNS: env.get("QUARRY_MAX_ACTIVE_RUNS")!.value!
        }
      })
      try {
        await child.waitFor((stdout) => stdout.includes("server.listening"))
        const port = (JSON.parse(child.stdout.split("\n")[0]!) as { port: number }).port
        const server = { child, port, url: `http://127.0.0.1:${port}` }
        for (const route of Object.values(probes)) {
          await until(async () => (await call(server, "GET", route)).status === 200, 30_000, route)
        }
        const health = (await call(server, "GET", "/healthz")).json() as { cluster?: { runnerId: string } }
        assert.strictEqual(health.cluster?.runnerId, `127.0.0.1:${runnerPort}`)
      } finally {
        child.child.kill("SIGTERM")
        await child.exited
        await dropDatabase(adminUrl(), db)
      }
    },
    90_000
  )
})

interface ClusterSpec {
  readonly replicas: number
  readonly selector: { readonly matchLabels: Record<string, string> }
  readonly template: {
    readonly spec: {
      readonly terminationGracePeriodSeconds: number
      readonly containers: ReadonlyArray<
        Omit<Container, "env"> & {
          readonly env: ReadonlyArray<{
            readonly name: string
            readonly value?: string
            readonly valueFrom?: {
              readonly fieldRef?: { readonly fieldPath: string }
              readonly secretKeyRef?: { readonly name: string; readonly key: string }
            }
          }>
          readonly lifecycle: { readonly preStop: { readonly sleep: { readonly seconds: number } } }
        }
      >
    }
  }
}
