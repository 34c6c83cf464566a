"""The catalog's database (`catalog.db.Catalog`), each test on an SQLite file and on the real
PostgreSQL at 127.0.0.1:5432, there in a schema of its own that is dropped after."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from catalog.db import MAX_REPLICAS, MIGRATIONS, Catalog
from catalog.names import parse_ref
from catalog.records import Deployment, VersionMetadata, VersionState
from catalog.schema import metadata as tables
from inferq.errors import Conflict, InvalidRequest, ModelNotFound
from tests.catalog.databases import postgres_schema

SIGNATURE = {"inputs": [{"name": "x", "type": "float32", "shape": [None, 4]}], "outputs": []}

Opener = Callable[[], Catalog]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new `Catalog` on the same database each time it is called; all are closed,
    and the PostgreSQL schema dropped, after the test."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'catalog.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        opened: list[Catalog] = []

        def opener() -> Catalog:
            opened.append(Catalog.open(url))
            stack.callback(opened[-1].close)  # closed before the schema is dropped
            return opened[-1]

        yield opener


@pytest.fixture
def catalog(open_catalog: Opener) -> Catalog:
    return open_catalog()


def add(catalog: Catalog, name: str, n: int = 1, **meta: object) -> list[int]:
    numbers = []
    for i in range(n):
        version = catalog.add_version(
            name,
            sha256=f"{i:064x}",
            size=100 + i,
            file_key=f"{name}/{i}.onnx",
            signature=SIGNATURE,
            metadata=VersionMetadata(**meta),  # type: ignore[arg-type]
        )
        numbers.append(version.number)
    return numbers


def test_versions_are_numbered_per_model_and_the_first_creates_the_model(catalog: Catalog) -> None:
    assert add(catalog, "iris", 3) == [1, 2, 3]
    assert add(catalog, "digits", 2) == [1, 2]
    assert add(catalog, "iris") == [4]
    assert [m.name for m in catalog.list_models()] == ["digits", "iris"]
    assert [v.number for v in catalog.list_versions("iris")] == [1, 2, 3, 4]


def test_a_version_keeps_what_it_was_given(catalog: Catalog) -> None:
    meta = VersionMetadata("a classifier", {"team": "ml"}, ["setosa", "versicolor"])
    created = catalog.add_version(
        "iris", "ab" * 32, 1234, "iris/1.onnx", SIGNATURE, meta, model_description="Fisher's irises"
    )
    got = catalog.get_version("iris", 1)
    assert got == created
    assert (got.sha256, got.size, got.file_key) == ("ab" * 32, 1234, "iris/1.onnx")
    assert got.signature == SIGNATURE
    assert got.metadata == meta
    assert got.state is VersionState.READY
    assert got.created.tzinfo is not None
    assert got.ref == "iris@1"
    assert catalog.get_model("iris").description == "Fisher's irises"


def test_aliases_are_set_moved_and_removed(catalog: Catalog) -> None:
    add(catalog, "iris", 3)
    catalog.set_alias("iris", "production", 1)
    catalog.set_alias("iris", "canary", 2)
    assert catalog.resolve("iris@production").number == 1
    assert catalog.get_version("iris", 1).aliases == ("production",)
    catalog.set_alias("iris", "production", 3)  # moved
    assert catalog.resolve("iris@production").number == 3
    assert [(a.name, a.version) for a in catalog.list_aliases("iris")] == [
        ("canary", 2),
        ("production", 3),
    ]
    catalog.remove_alias("iris", "canary")
    with pytest.raises(ModelNotFound, match="no alias 'canary'"):
        catalog.resolve("iris@canary")
    with pytest.raises(ModelNotFound):
        catalog.remove_alias("iris", "canary")


def test_a_reference_names_the_newest_version_a_number_or_an_alias(catalog: Catalog) -> None:
    add(catalog, "iris", 3)
    catalog.set_alias("iris", "production", 2)
    assert catalog.resolve("iris").number == 3
    assert catalog.resolve("iris@1").number == 1
    assert catalog.resolve("iris@production").number == 2
    catalog.delete_version("iris", 3)
    assert catalog.resolve("iris").number == 2  # the newest that is not deleted


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("nosuch", ModelNotFound),
        ("nosuch@1", ModelNotFound),
        ("iris@9", ModelNotFound),
        ("iris@staging", ModelNotFound),
        ("iris@", InvalidRequest),
        ("iris@0", InvalidRequest),
        ("iris@²", InvalidRequest),  # str.isdigit() says it is a digit
        ("iris@9223372036854775808", InvalidRequest),
        ("iris@a@b", InvalidRequest),
        ("@1", InvalidRequest),
        ("bad name", InvalidRequest),
        ("iris@bad alias", InvalidRequest),
    ],
)
def test_a_bad_reference_gets_a_clear_error(
    catalog: Catalog, ref: str, error: type[Exception]
) -> None:
    add(catalog, "iris")
    with pytest.raises(error):
        catalog.resolve(ref)


def test_parse_ref_is_the_one_form() -> None:
    assert str(parse_ref("iris")) == "iris@latest"
    assert parse_ref("iris@3").version == 3
    assert parse_ref("iris@production").alias == "production"


@pytest.mark.parametrize("alias", ["123", "latest", "bad alias", ""])
def test_an_alias_that_could_not_be_read_back_is_refused(catalog: Catalog, alias: str) -> None:
    add(catalog, "iris")
    with pytest.raises(InvalidRequest):
        catalog.set_alias("iris", alias, 1)
    assert catalog.list_aliases("iris") == []


def test_an_alias_points_only_to_an_existing_version(catalog: Catalog) -> None:
    add(catalog, "iris")
    with pytest.raises(ModelNotFound, match="no version 2"):
        catalog.set_alias("iris", "production", 2)
    with pytest.raises(ModelNotFound, match="no model named 'nosuch'"):
        catalog.set_alias("nosuch", "production", 1)


def test_an_invalid_model_name_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest, match="invalid model name"):
        add(catalog, "../etc")
    assert catalog.list_models() == []


def test_deleting_a_version_an_alias_points_to_is_refused_and_says_which(
    catalog: Catalog,
) -> None:
    add(catalog, "iris", 2)
    catalog.set_alias("iris", "production", 1)
    catalog.set_alias("iris", "canary", 1)
    with pytest.raises(Conflict, match="canary, production") as refused:
        catalog.delete_version("iris", 1)
    assert refused.value.details["aliases"] == ["canary", "production"]
    assert catalog.get_version("iris", 1).state is VersionState.READY
    catalog.set_alias("iris", "production", 2)
    catalog.remove_alias("iris", "canary")
    assert catalog.delete_version("iris", 1).state is VersionState.DELETED


def test_a_deleted_version_is_gone_but_its_number_is_not_reused(catalog: Catalog) -> None:
    add(catalog, "iris", 2)
    catalog.delete_version("iris", 2)
    with pytest.raises(ModelNotFound):
        catalog.get_version("iris", 2)
    with pytest.raises(ModelNotFound):
        catalog.delete_version("iris", 2)
    assert [v.number for v in catalog.list_versions("iris")] == [1]
    assert [v.state for v in catalog.list_versions("iris", include_deleted=True)] == [
        VersionState.READY,
        VersionState.DELETED,
    ]
    assert add(catalog, "iris") == [3]


def test_a_model_whose_versions_are_all_deleted_resolves_to_nothing(catalog: Catalog) -> None:
    add(catalog, "iris")
    catalog.delete_version("iris", 1)
    with pytest.raises(ModelNotFound, match="has no versions"):
        catalog.resolve("iris")


def test_the_catalog_survives_closing_and_reopening(open_catalog: Opener) -> None:
    first = open_catalog()
    add(first, "iris", 2, description="kept")
    first.set_alias("iris", "production", 1)
    first.close()
    again = open_catalog()
    assert again.resolve("iris@production").number == 1
    assert again.resolve("iris").metadata.description == "kept"
    assert add(again, "iris") == [3]


def test_opening_twice_migrates_once_and_matches_the_schema(open_catalog: Opener) -> None:
    first = open_catalog()
    add(first, "iris")
    second = open_catalog()  # the migrations are already at head: nothing changes
    assert [v.number for v in second.list_versions("iris")] == [1]
    engine = second._engine
    with engine.connect() as conn:
        heads = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        found = sa.inspect(conn)
        for table in tables.sorted_tables:
            columns = {c["name"] for c in found.get_columns(table.name)}
            assert columns == set(table.columns.keys()), table.name
    assert heads == ["0003"]


def test_two_writers_get_distinct_numbers(open_catalog: Opener) -> None:
    """Two catalogs (as two gateways would), a thread each, adding versions to one new model at
    once: every number from 1 to the total is given exactly once."""
    writers = [open_catalog(), open_catalog()]
    per_writer = 15
    start = threading.Barrier(len(writers))
    numbers: list[int] = []
    errors: list[BaseException] = []

    def write(catalog: Catalog) -> None:
        try:
            start.wait()
            numbers.extend(add(catalog, "shared", per_writer))
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(numbers) == list(range(1, len(writers) * per_writer + 1))
    assert len(writers[0].list_models()) == 1


def test_two_gateways_opening_a_new_database_at_once_both_work(open_catalog: Opener) -> None:
    """Both run the migrations on open; one waits for the other instead of both creating the
    tables."""
    start = threading.Barrier(2)
    opened: list[Catalog] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            start.wait()
            opened.append(open_catalog())
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    add(opened[0], "iris")
    assert [v.number for v in opened[1].list_versions("iris")] == [1]


def test_replicas_are_set_changed_and_zero_undeploys(catalog: Catalog) -> None:
    add(catalog, "iris", 2)
    add(catalog, "digits")
    assert catalog.deployments() == []
    assert catalog.set_replicas("iris", 2, 3) == Deployment("iris", 2, 3)
    catalog.set_replicas("digits", 1, 1)
    catalog.set_replicas("iris", 1, 1)
    assert catalog.deployments() == [
        Deployment("digits", 1, 1),
        Deployment("iris", 1, 1),
        Deployment("iris", 2, 3),
    ]
    assert catalog.get_version("iris", 2).replicas == 3
    catalog.set_replicas("iris", 2, 1)
    assert catalog.get_version("iris", 2).replicas == 1
    assert catalog.set_replicas("iris", 2, 0) == Deployment("iris", 2, 0)
    assert catalog.get_version("iris", 2).replicas == 0
    assert [d.ref for d in catalog.deployments()] == ["digits@1", "iris@1"]
    catalog.set_replicas("iris", 2, 0)  # undeploying what is not deployed is no error
    assert [v.replicas for v in catalog.list_versions("iris")] == [1, 0]


@pytest.mark.parametrize("replicas", [-1, MAX_REPLICAS + 1])
def test_replicas_out_of_bounds_are_refused(catalog: Catalog, replicas: int) -> None:
    add(catalog, "iris")
    with pytest.raises(InvalidRequest, match=f"between 0 and {MAX_REPLICAS}"):
        catalog.set_replicas("iris", 1, replicas)
    assert catalog.deployments() == []


def test_only_an_existing_version_is_deployed(catalog: Catalog) -> None:
    add(catalog, "iris")
    with pytest.raises(ModelNotFound, match="no version 2"):
        catalog.set_replicas("iris", 2, 1)
    with pytest.raises(ModelNotFound, match="no model named 'nosuch'"):
        catalog.set_replicas("nosuch", 1, 1)
    catalog.delete_version("iris", 1)
    with pytest.raises(ModelNotFound):
        catalog.set_replicas("iris", 1, 1)
    assert catalog.deployments() == []


def test_deleting_a_deployed_version_is_refused_until_it_is_undeployed(catalog: Catalog) -> None:
    add(catalog, "iris", 2)
    catalog.set_replicas("iris", 1, 2)
    with pytest.raises(Conflict, match="undeploy it first: replicas 0") as refused:
        catalog.delete_version("iris", 1)
    assert refused.value.details["replicas"] == 2
    assert catalog.get_version("iris", 1).state is VersionState.READY
    catalog.set_replicas("iris", 1, 0)
    assert catalog.delete_version("iris", 1).state is VersionState.DELETED
    assert catalog.deployments() == []


def test_deployments_survive_reopening(open_catalog: Opener) -> None:
    first = open_catalog()
    add(first, "iris")
    first.set_replicas("iris", 1, 2)
    first.close()
    assert open_catalog().deployments() == [Deployment("iris", 1, 2)]


def test_a_catalog_made_by_the_first_migration_is_upgraded_on_open(tmp_path: Path) -> None:
    """A database left at 0001 (before deployments existed), with a version in it: opening it
    adds the deployments table and keeps what was there."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        assert not sa.inspect(conn).has_table("deployments")
        model_id = conn.execute(
            sa.text(
                "INSERT INTO models (name, description, created, last_version) "
                "VALUES ('iris', '', CURRENT_TIMESTAMP, 1) RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO versions (model_id, number, sha256, size, file_key, signature, "
                "metadata, state, created) VALUES (:model_id, 1, :sha, 10, 'iris/1.onnx', "
                "'{}', '{}', 'ready', CURRENT_TIMESTAMP)"
            ),
            {"model_id": model_id, "sha": "0" * 64},
        )
    engine.dispose()
    with Catalog.open(url) as catalog:
        assert catalog.get_version("iris", 1).replicas == 0
        catalog.set_replicas("iris", 1, 1)
        assert catalog.deployments() == [Deployment("iris", 1, 1)]
        with catalog._engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0003"
