"""The paper exchange as an agent: orders and closed bars in, execution reports out."""
