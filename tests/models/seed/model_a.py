"""The seed's ModelA, written as the seed's README shows it (shared/seeds/002_*, "How to add
new model"): the three methods are copied verbatim; only the class line and the import are
ours. `workers.BytesModel` serves it; its name comes from the class name: ``model_a``."""

# ruff: noqa
# mypy: ignore-errors
from tests.models.seed import models_pb2
from workers import BytesModel


class ModelA(BytesModel):
    async def process_request(self, body):
        model_a_request = models_pb2.ModelARequest()
        model_a_request.ParseFromString(body)
        response_obj = models_pb2.ModelAResponse()
        response_obj.reply = f"Processed message: {model_a_request.messages}\n"
        return response_obj

    def get_request_format(self):
        return models_pb2.ModelARequest.DESCRIPTOR

    def get_response_format(self):
        return models_pb2.ModelAResponse.DESCRIPTOR
