"""Sum the calls made to the functions whose name matches a pattern in a callgrind output file.

    python3 callgrind_calls.py callgrind.out.1 '^oriole::router::route_to$'

callgrind names a function once as `fn=(id) name` / `cfn=(id) name` and by `(id)` alone after
that; a `calls=N ...` line follows each `cfn=` line it counts for.
"""
import re
import sys


def main():
    path, pattern = sys.argv[1], re.compile(sys.argv[2])
    names = {}
    callee = None
    total = 0
    name_line = re.compile(r"c?fn=\((\d+)\)(?: (.*))?")
    with open(path) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                m = name_line.match(line.strip())
                if not m:
                    continue
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                callee = names.get(m.group(1), "") if line.startswith("cfn=") else None
            elif line.startswith("calls=") and callee is not None:
                if pattern.search(callee):
                    total += int(line.split()[0][len("calls="):])
                callee = None
    print(total)


if __name__ == "__main__":
    main()
