"""Plain app code that the jobs import like any other module of the project."""


def total(quantity: int, unit_price: float) -> float:
    return round(quantity * unit_price, 2)
