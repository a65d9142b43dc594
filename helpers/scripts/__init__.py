"""Small programs that chapters run as subprocesses, to show the script form of an idea."""
