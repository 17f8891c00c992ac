"""`shop_staging`: one real staging deployment of the shop, shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from verify.shop_staging import StagingShop, shop_in_staging


@pytest.fixture(scope="module")
def shop_staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StagingShop]:
    with shop_in_staging(tmp_path_factory.mktemp("shop-staging")) as staging:
        yield staging
