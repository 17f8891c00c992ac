"""The product resource as the API reads and writes it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ProductName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ProductIn(BaseModel):
    """What a client sends to create a product."""

    model_config = ConfigDict(extra="forbid")

    name: ProductName
    price: float = Field(gt=0, le=1_000_000, description="Unit price, greater than zero.")
    description: str = Field(default="", max_length=1000)


class Product(ProductIn):
    """A stored product."""

    id: int


class ErrorBody(BaseModel):
    detail: str
