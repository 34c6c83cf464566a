"""A complete new model: counts the words of a text.

Serve it, with a gateway already running, no restart needed:

    inferq worker examples.word_count:WordCountModel

then:

    curl -X POST localhost:8000/predict/word_count?wait=5 \
         -H 'Content-Type: application/json' -d '{"text": "to be or not to be"}'
"""

from __future__ import annotations

from collections import Counter

from examples import word_count_pb2
from workers import Model


class WordCountModel(Model[word_count_pb2.WordCountRequest, word_count_pb2.WordCountResponse]):
    name = "word_count"
    description = "Counts the words of a text."
    request_type = word_count_pb2.WordCountRequest
    response_type = word_count_pb2.WordCountResponse

    async def process_request(
        self, request: word_count_pb2.WordCountRequest
    ) -> word_count_pb2.WordCountResponse:
        counts = Counter(request.text.lower().split())
        return word_count_pb2.WordCountResponse(words=sum(counts.values()), counts=counts)
