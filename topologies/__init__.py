"""Topic declarations and their creation on the broker."""
