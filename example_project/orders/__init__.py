"""The order-fulfilment module: products and stock, orders, and the saga that fulfils them."""
