from . import example_shipment
