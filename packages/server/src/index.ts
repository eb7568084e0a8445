/**
 * @since 0.1.0
 */
export * as Admission from "./Admission.js"
export * as Api from "./Api.js"
export * as ApiError from "./ApiError.js"
export * as Auth from "./Auth.js"
export * as Cluster from "./Cluster.js"
export * as ClusterAdmission from "./ClusterAdmission.js"
export * as ClusterRun from "./ClusterRun.js"
export * as Dashboard from "./Dashboard.js"
export * as Handlers from "./Handlers.js"
export * as RequestLog from "./RequestLog.js"
export * as RunEvents from "./RunEvents.js"
export * as RunView from "./RunView.js"
export * as Server from "./Server.js"
export * as Tracing from "./Tracing.js"
