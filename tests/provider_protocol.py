"""Drive a generated project's dynamic providers the way the Pulumi engine does: start
`python -m pulumi.dynamic` in the project folder (the process the engine launches for
`pulumi-python:dynamic:Resource`), read its port, and call Configure, Check, Create, Diff,
Update, Read and Delete over gRPC with pulumi's own provider_pb2 messages."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

TYPE = "pulumi-python:dynamic:Resource"


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(props, {}))


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {k: rpc.unwrap_rpc_secret(v) for k, v in rpc.deserialize_properties(struct).items()}


class DynamicProvider:
    """One `python -m pulumi.dynamic` process, spoken to over gRPC."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulumi.dynamic"],
            cwd=project,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        self.stub.Configure(provider_pb2.ConfigureRequest(args=_struct({})), timeout=30)

    def urn(self, name: str) -> str:
        return f"urn:pulumi:dev::gpuplan-test::{TYPE}::{name}"

    def check(self, name: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        req = provider_pb2.CheckRequest(urn=self.urn(name), olds=_struct(olds), news=_struct(news))
        resp = self.stub.Check(req, timeout=60)
        assert not resp.failures, resp.failures
        return _plain(resp.inputs)

    def create(self, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        req = provider_pb2.CreateRequest(urn=self.urn(name), properties=_struct(props))
        resp = self.stub.Create(req, timeout=120)
        return resp.id, _plain(resp.properties)

    def diff(
        self, name: str, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> provider_pb2.DiffResponse:
        req = provider_pb2.DiffRequest(
            id=id_, urn=self.urn(name), olds=_struct(olds), news=_struct(news)
        )
        return self.stub.Diff(req, timeout=60)

    def update(
        self, name: str, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        req = provider_pb2.UpdateRequest(
            id=id_, urn=self.urn(name), olds=_struct(olds), news=_struct(news)
        )
        return _plain(self.stub.Update(req, timeout=120).properties)

    def read(self, name: str, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        req = provider_pb2.ReadRequest(id=id_, urn=self.urn(name), properties=_struct(props))
        return _plain(self.stub.Read(req, timeout=60).properties)

    def delete(self, name: str, id_: str, props: dict[str, Any]) -> None:
        req = provider_pb2.DeleteRequest(id=id_, urn=self.urn(name), properties=_struct(props))
        self.stub.Delete(req, timeout=60)

    def close(self) -> str:
        self.channel.close()
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        return err.decode(errors="replace")

    def __enter__(self) -> DynamicProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The engine's DiffResponse.changes values.
DIFF_NONE = provider_pb2.DiffResponse.DIFF_NONE
DIFF_SOME = provider_pb2.DiffResponse.DIFF_SOME
