import { storeLayer, usePostgres } from "./postgres.js"
import { runStoreSuite } from "./RunStoreSuite.js"

const adminUrl = usePostgres()

runStoreSuite("SqlRunStore on PostgreSQL", () => storeLayer(adminUrl()))
