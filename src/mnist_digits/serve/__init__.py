"""The drawing web page and its JSON API (`mnist-digits serve`)."""
