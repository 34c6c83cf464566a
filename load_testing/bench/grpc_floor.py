"""The gRPC transport's floor for ``bench doors``: a grpcio asyncio server (uvloop, as the
gateway's) whose ``ModelInfer`` answers at once with a canned model_b-shaped response, no
queue, no worker. Its CPU per call is what grpcio costs before inferq does anything; the
doors bench drives it with the same clients as the real gRPC door.

``python -m load_testing.bench.grpc_floor PORT`` serves until it is terminated."""

from __future__ import annotations

import sys

import grpc
import numpy as np
import uvloop

from proto import grpc_predict_v2_pb2 as pb
from proto import grpc_predict_v2_pb2_grpc as pb_grpc


def canned_answer() -> pb.ModelInferResponse:
    answer = pb.ModelInferResponse(model_name="model_b", model_version="1")
    answer.outputs.add(name="label", datatype="INT32", shape=[1])
    answer.outputs.add(name="probabilities", datatype="FP32", shape=[1, 10])
    answer.raw_output_contents.append(np.zeros(1, "<i4").tobytes())
    answer.raw_output_contents.append(np.full(10, 0.1, "<f4").tobytes())
    return answer


class CannedInference(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.answer = canned_answer()

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return self.answer


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(CannedInference(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
