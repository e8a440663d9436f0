"""The mutation run: known bugs planted one at a time, and the tests that must catch each."""
