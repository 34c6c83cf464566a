"""``inference.GRPCInferenceService``, the Open Inference Protocol over gRPC: the messages of
`proto.grpc_predict_v2_pb2` to and from `api_service.core.oip` (the operations) and
`api_service.core.tensors` (the tensors), the same calls the REST door makes.

Inputs come as ``raw_input_contents`` (one entry per input, in order) or as each input's
typed ``contents`` (the field of its datatype; FP16 only raw); outputs go back as
``raw_output_contents``, as Triton answers. A request's gRPC deadline bounds its wait."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from api_service.core.gateway import Gateway
from api_service.core.oip import InferRequest, InferResponse, OpenInference
from api_service.core.tensors import Tensor, tensor_from_bytes, tensor_from_values
from api_service.grpc.door import current_call
from inferq.errors import InvalidRequest
from proto import grpc_predict_v2_pb2 as pb
from proto import grpc_predict_v2_pb2_grpc as pb_grpc

#: The field of `InferTensorContents` that carries each datatype's values.
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self.oip = OpenInference(gateway)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await self.oip.server_ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        ready = await self.oip.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        metadata = self.oip.server_metadata()
        return pb.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        metadata = await self.oip.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata.name,
            versions=metadata.versions,
            platform=metadata.platform,
            inputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs
            ],
            outputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.outputs
            ],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        call = current_call()
        remaining = context.time_remaining()  # None: the client set no deadline
        answer = await self.oip.infer(
            InferRequest(
                model=request.model_name,
                version=request.model_version or None,
                inputs=input_tensors(request),
                outputs=[output.name for output in request.outputs] or None,
                id=request.id,
                timeout_s=remaining if remaining is not None and remaining > 0 else None,
                trace_context=call.trace_context,
                caller=call.caller,
            )
        )
        return infer_response(answer)


def input_tensors(request: pb.ModelInferRequest) -> list[Tensor]:
    """The request's input tensors, from its raw contents or each input's typed contents;
    `InvalidRequest` for contents that do not match their datatype and shape."""
    inputs: Sequence[pb.ModelInferRequest.InferInputTensor] = request.inputs
    raw = request.raw_input_contents
    if raw:
        if len(raw) != len(inputs):
            raise InvalidRequest(
                f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs: one "
                "per input, in order"
            )
        if any(t.HasField("contents") for t in inputs):
            raise InvalidRequest("give inputs as raw_input_contents or as contents, not both")
        return [
            tensor_from_bytes(t.name, t.datatype, list(t.shape), r)
            for t, r in zip(inputs, raw, strict=True)
        ]
    tensors = []
    for tensor in inputs:
        field = CONTENTS.get(tensor.datatype)
        if field is None:  # FP16 has no typed contents; an unknown datatype is named
            if tensor.datatype == "FP16":
                raise InvalidRequest(f"input {tensor.name!r}: FP16 travels as raw_input_contents")
            field = "bytes_contents"
        values = list(getattr(tensor.contents, field))
        tensors.append(tensor_from_values(tensor.name, tensor.datatype, list(tensor.shape), values))
    return tensors


def infer_response(answer: InferResponse) -> pb.ModelInferResponse:
    return pb.ModelInferResponse(
        model_name=answer.model_name,
        model_version=answer.model_version,
        id=answer.id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in answer.outputs
        ],
        raw_output_contents=[t.to_bytes() for t in answer.outputs],
    )
