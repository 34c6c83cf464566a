"""The gateway's gRPC door (`INFERQ_GRPC_PORT`): the Open Inference Protocol's
``inference.GRPCInferenceService`` (`inference`), inferq's own queue verbs
(`inferq.v1.InferqService`, `tasks`), ``grpc.health.v1`` with a service name per served model
(`health`) and server reflection, on grpcio's asyncio server (`server`). Every call passes
one interceptor (`door`): authentication, errors, metrics, the access log. All of it calls the
same `api_service.core.gateway.Gateway` as the HTTP door."""
