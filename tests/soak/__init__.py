"""The soak test (issue 9): not collected by pytest; run `python3 -m tests.soak.soak`."""
