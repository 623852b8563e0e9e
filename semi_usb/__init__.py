"""semi_usb: SeMi and ACR for USB (semilearn 0.3.2)."""
