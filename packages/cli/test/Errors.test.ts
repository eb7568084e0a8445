import { assert, describe, it } from "@effect/vitest"
import * as Errors from "../src/Errors.js"

describe("Errors.describeHolder", () => {
  it("names the process and host of a lease owner, and the runner of a cluster's", () => {
    assert.strictEqual(Errors.describeHolder("build-7:4242:9f3a01bc"), "process 4242 on host build-7")
    assert.strictEqual(
      Errors.describeHolder("127.0.0.1:18432/vm:24142:0c1d2e3f"),
      "process 24142 on host vm (cluster runner 127.0.0.1:18432)"
    )
    // Not an owner id of Quarry's: shown as it is.
    assert.strictEqual(Errors.describeHolder("elsewhere"), "elsewhere")
  })
})
