import { assert, describe, it } from "@effect/vitest"
import * as Metrics from "@quarry/server/Metrics"

describe("Metrics.routeOf", () => {
  it("keeps fixed routes, replaces run ids, and labels any other path `other` (bounded label values)", () => {
    for (const route of Metrics.fixedRoutes) assert.strictEqual(Metrics.routeOf(route), route)
    assert.strictEqual(Metrics.routeOf("/v1/runs/moby"), "/v1/runs/{id}")
    for (const action of ["cancel", "resume", "artifact", "events"]) {
      assert.strictEqual(Metrics.routeOf(`/v1/runs/run-1.a_b/${action}`), `/v1/runs/{id}/${action}`)
    }
    // The dashboard's assets are routes of their own, not scanner noise.
    for (const asset of ["/dashboard/app.js", "/dashboard/app.css"]) assert.strictEqual(Metrics.routeOf(asset), asset)
    for (
      const path of [
        "/dashboard/other.js",
        "/wp-login.php",
        "/v1/runs/a/b/c",
        "/v1/runs/a/delete",
        "/v2/runs",
        "/livez/x",
        "//"
      ]
    ) {
      assert.strictEqual(Metrics.routeOf(path), "other", path)
    }
  })
})
