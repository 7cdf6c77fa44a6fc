"""Prompts for the `code`, `debugging` and `math` routes."""

ITEMS = []


def add(label, tags, *texts):
    for t in texts:
        ITEMS.append((label, tags, t))


# ---------------------------------------------------------------- code
add("code", "",
    "Write a Python function that merges two sorted lists into one sorted list without using sort().",
    "Can you give me a Kotlin data class for a user profile with name, email and an optional avatar URL?",
    "I need a small Rust program that reads lines from stdin and prints them reversed.",
    "Generate a SQLAlchemy model for a blog with posts, authors and tags (many-to-many).",
    "Implement a thread-safe counter in Java using AtomicInteger, with increment and get methods.",
    "Write a GitHub Actions workflow that builds a Go project and runs go vet on every pull request.",
    "Make me a Vue 3 component that shows a paginated table, 20 rows per page.",
    "Create a Python decorator that retries a function up to 3 times with exponential backoff.",
    "Write a shell one-liner that finds the 10 largest files under the current directory.",
    "Implement a trie in TypeScript with insert, search and startsWith.",
    "Write an nginx config that serves a static site and proxies /api to localhost:3000.",
    "Give me a C# extension method that splits a list into chunks of a given size.",
    "Build a minimal WebSocket chat server in Node with the ws package.",
    "Write a Terraform config for a private S3 bucket that blocks public access and encrypts objects.",
    "Port this idea to Swift: a function that returns the n-th Fibonacci number iteratively.",
    "Write a Haskell function that flattens a nested list type.",
    "Implement rate limiting middleware for an Express app, 100 requests per minute per IP.",
)
add("code", "typo",
    "writ a python scrpt that downloads all images from a webpage",
    "pls code me a simple calculator in javascript w/ html buttons",
    "need a regex that matchs valid ipv4 adresses",
    "how to make a class in c++ that holds a dynamic array and resizes itself",
)
add("code", "multi",
    "I'm building a CLI in Python with click. Can you write the skeleton with two subcommands, `init` and "
    "`sync`? Each should take a --verbose flag.",
    "We store sessions in Redis. Write a Go function that saves a session struct as JSON with a 30-minute "
    "TTL, and another that loads it back.",
    "I want to learn by example. Could you implement a linked list in C with push, pop and print, and "
    "comment every line?",
)
add("code", "hard",
    "Write a Python function that computes the median of a list of numbers.",
    "Write a script that translates every string in my en.json file into a fr.json file using a dictionary "
    "lookup.",
    "Implement a function that summarises a list of transactions into totals per customer (just the code, "
    "in TypeScript).",
)
add("code", "",
    """Write a Python class for this spec. It's for our internal inventory tool.

- class Inventory, holds items in a dict keyed by SKU
- add_item(sku, name, qty, price): adds or increases qty
- remove_item(sku, qty): decreases qty, raises ValueError if not enough stock
- total_value(): sum of qty * price over all items
- low_stock(threshold=5): list of SKUs with qty below the threshold
- to_csv(path) and from_csv(path) for persistence

Use dataclasses for the items and type hints everywhere. No external dependencies, and include a couple
of doctests so I can see how it's used.""",
    """I have this existing Express route and I want you to write the equivalent in FastAPI, with pydantic
models for the request and response:

app.post('/orders', async (req, res) => {
  const { customerId, items } = req.body;
  if (!customerId || !Array.isArray(items) || items.length === 0) {
    return res.status(400).json({ error: 'customerId and items are required' });
  }
  const total = items.reduce((s, i) => s + i.price * i.quantity, 0);
  const order = await db.orders.insert({ customerId, items, total, createdAt: new Date() });
  res.status(201).json(order);
});

Keep the same validation rules and status codes.""",
    """Here is the interface our team agreed on:

interface Cache<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V, ttlMs?: number): void;
  delete(key: K): boolean;
  size(): number;
}

Please implement it in TypeScript as a class with per-entry expiry. Expired entries should be removed
lazily on get and also by a cleanup timer every minute that can be stopped with a dispose() method. Add
Jest tests for expiry using fake timers.""",
    """Can you write a bash script for our nightly backup job? Requirements: dump the postgres database
named `shop` with pg_dump, gzip it, name the file with the date (shop-2024-05-01.sql.gz), upload it to
s3://acme-backups/db/ with the aws cli, delete local dumps older than 7 days, and log every step with a
timestamp to /var/log/backup.log. It should exit non-zero and print a clear message if any step fails,
and it must be safe to run from cron (no interactive prompts, absolute paths).""",
    """I'm making a small game for my kid in Python with pygame. The idea: a cat at the bottom of the
screen moves left and right with the arrow keys, fish fall from the top at random positions, and you
get a point for each fish the cat catches. If three fish hit the ground the game ends and shows the
score with a 'press space to restart' message. I don't have sprites yet so just use coloured rectangles.
Could you write the whole thing in one file, with comments so I can explain it to her?""",
    """Write a Rust function with this signature:

fn parse_duration(s: &str) -> Result<std::time::Duration, ParseError>

It should accept strings like "90s", "5m", "1h30m", "2h", "250ms" and combinations in descending order.
Whitespace is not allowed. Return a custom ParseError enum (EmptyInput, BadNumber, UnknownUnit,
WrongOrder) that implements std::error::Error via thiserror. Include unit tests covering the valid forms
and each error variant.""",
    """We have a React app and this is the data the API returns for a dashboard:

{ "widgets": [ { "id": "w1", "type": "counter", "title": "Active users", "value": 1284 },
  { "id": "w2", "type": "sparkline", "title": "Signups", "points": [3, 8, 5, 12, 9] },
  { "id": "w3", "type": "list", "title": "Top pages", "items": ["/", "/pricing", "/docs"] } ] }

Write a Dashboard component in TypeScript that fetches this from /api/dashboard, shows a loading state,
and renders each widget type with its own small component. Use plain CSS grid, no UI library.""",
)
add("code", "es",
    "Escríbeme una función en Python que valide si un correo electrónico tiene un formato correcto.",
    "¿Me puedes hacer un script en bash que comprima todos los logs de la semana pasada?",
)
add("code", "fr",
    "Écris une fonction JavaScript qui retire les doublons d'un tableau d'objets selon leur id.",
    "Peux-tu coder une petite API REST en Flask pour gérer une liste de livres ?",
)
add("code", "de",
    "Schreib mir bitte eine Java-Klasse für ein Bankkonto mit Einzahlung, Abhebung und Kontostand.",
)

# ---------------------------------------------------------------- debugging
add("debugging", "",
    "Why am I getting 'ModuleNotFoundError: No module named requests' even though I installed it?",
    "My Flask app returns 404 for every route except /. What could be wrong?",
    "Segmentation fault (core dumped) when my C program calls strcpy, how do I find out why?",
    "CORS error: No 'Access-Control-Allow-Origin' header is present on the requested resource. How do I fix this?",
    "My Python script works in the terminal but fails with a permission error when run by cron.",
    "Kubernetes pod stuck in CrashLoopBackOff, where do I start looking?",
    "I get 'undefined is not a function' when calling map on the API response in React.",
    "Why does my async function return a Promise instead of the value?",
    "cargo build says 'the trait bound `MyType: Serialize` is not satisfied' but I derived it.",
    "My SQL migration fails with 'relation users already exists'. How do I recover?",
    "The page loads fine locally but in production the CSS is missing.",
    "Deadlock in my Go program: fatal error: all goroutines are asleep - deadlock!",
    "Why is my recursive function hitting RecursionError: maximum recursion depth exceeded?",
    "My Jest tests time out only when they run together, one by one they pass.",
    "SSL: CERTIFICATE_VERIFY_FAILED when I call an HTTPS endpoint from Python on my Mac.",
    "npm ERR! ERESOLVE unable to resolve dependency tree. What now?",
)
add("debugging", "typo",
    "my code keeps crashing wiht index out of bounds exeption in java, help",
    "why dosent my css grid work on safari??",
    "python says indentationerror unexpected indent but i cant see anything wrong",
    "docker compose up hangs forever at 'attaching to' no idea whats goin on",
)
add("debugging", "multi",
    "I upgraded Django from 3.2 to 4.2 and now all my forms throw CSRF verification failed. Nothing else "
    "changed. Where should I look?",
    "Our API got slow after yesterday's deploy. p99 went from 200 ms to 3 s. The only change was a new "
    "index on the orders table. Could that be it?",
    "The app works on Android. On iOS it crashes right after the splash screen. Xcode shows nothing useful.",
)
add("debugging", "hard",
    "My pandas merge returns more rows than either input dataframe, what am I doing wrong?",
    "My function that computes the average returns NaN for some inputs, can you spot why?",
    "The invoice PDF generator in our app throws a KeyError on 'tax_rate' for some customers.",
)
add("debugging", "",
    """I'm getting this when I start the service, any idea?

Traceback (most recent call last):
  File "/app/main.py", line 14, in <module>
    from services.billing import BillingService
  File "/app/services/billing.py", line 3, in <module>
    from services.users import get_user
  File "/app/services/users.py", line 5, in <module>
    from services.billing import BillingService
ImportError: cannot import name 'BillingService' from partially initialized module 'services.billing'
(most likely due to a circular import) (/app/services/billing.py)

It started after I added the get_user import.""",
    """Exception in thread "main" java.util.ConcurrentModificationException
    at java.base/java.util.ArrayList$Itr.checkForComodification(ArrayList.java:1013)
    at java.base/java.util.ArrayList$Itr.next(ArrayList.java:967)
    at com.acme.cart.Cart.removeExpired(Cart.java:58)
    at com.acme.cart.CartService.cleanup(CartService.java:31)
    at com.acme.Main.main(Main.java:12)

Line 58 is inside `for (Item item : items) { if (item.isExpired()) items.remove(item); }`.
Why does this happen and what's the right way to do it?""",
    """This Rust code doesn't compile and I don't understand the error:

fn longest(words: &Vec<String>) -> &str {
    let mut best = String::new();
    for w in words {
        if w.len() > best.len() { best = w.clone(); }
    }
    &best
}

error[E0515]: cannot return reference to local variable `best`
  --> src/main.rs:6:5
   |
6  |     &best
   |     ^^^^^ returns a reference to data owned by the current function

What does it want me to do?""",
    """Our nightly job has started failing. The log ends with:

2024-03-11 02:14:07 INFO  Fetched 18234 records from upstream
2024-03-11 02:14:09 INFO  Writing batch 1/19
2024-03-11 02:14:31 WARN  Connection pool exhausted, waiting
2024-03-11 02:15:31 ERROR Timeout acquiring connection after 60000 ms
2024-03-11 02:15:31 ERROR Job failed: sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow
10 reached, connection timed out, timeout 60.00

It ran fine for months. The only change last week was moving the writes into a thread pool with 20
workers. What's going on and how should I fix it?""",
    """When I run my React tests I get this warning and then a failure:

Warning: An update to UserList inside a test was not wrapped in act(...).
When testing, code that causes React state updates should be wrapped into act(...)

  ● UserList › shows users after loading
    Unable to find an element with the text: Alice.

The component fetches users in a useEffect and sets state. The test mocks fetch and then immediately
calls getByText('Alice'). In the browser everything works. Why does the test fail?""",
    """I have a memory leak in a Node service. Heap grows about 50 MB per hour until the container is
OOM-killed after roughly a day. We use Express, a Postgres pool, and an in-process cache that is a plain
object keyed by request URL. Heap snapshots show lots of strings and closures retained by
'timeoutList'. We set a setTimeout per cache entry to delete it after 10 minutes. Traffic is about 200
requests per second, mostly unique URLs with query strings. Where would you look first?""",
    """Terraform plan keeps wanting to replace my RDS instance every single time, even though I changed
nothing:

  # aws_db_instance.main must be replaced
-/+ resource "aws_db_instance" "main" {
      ~ engine_version = "14.7" -> "14" # forces replacement
        ...

I set engine_version = "14" in the config. AWS auto-upgraded the minor version. How do I stop the
replacement without destroying the database?""",
    """Can you help me figure out why this query is so slow? It takes 40 seconds on a table with 12 million
rows:

SELECT * FROM events WHERE lower(email) = 'someone@example.com' ORDER BY created_at DESC LIMIT 20;

There is an index on email and another on created_at. EXPLAIN shows a sequential scan. Postgres 15.""",
)
add("debugging", "es",
    "Me sale el error 'Cannot read properties of undefined (reading length)' en JavaScript y no sé por qué.",
    "Mi aplicación de Spring Boot no arranca y dice que el puerto 8080 ya está en uso, ¿qué hago?",
)
add("debugging", "fr",
    "Mon script Python plante avec « KeyError: 'id' » alors que la clé existe dans le JSON, pourquoi ?",
)
add("debugging", "de",
    "Mein Docker-Container startet nicht und im Log steht nur 'exec format error'. Woran liegt das?",
    "Warum bekomme ich in Git ständig Merge-Konflikte in der package-lock.json und wie behebe ich das?",
)

# ---------------------------------------------------------------- math
add("math", "",
    "What is the integral of 1/(x^2 + 1)?",
    "Solve the system: 2x + y = 7 and x - y = 2.",
    "How do I find the inverse of a 3x3 matrix by hand?",
    "What's 15 percent of 80 plus 12 percent of 150?",
    "Show that the sum of two odd numbers is always even.",
    "Explain what a Taylor series is and expand sin(x) to the x^5 term.",
    "If I invest 5000 at 4% compounded monthly, how much do I have after 10 years?",
    "What's the probability of drawing two aces in a row from a deck without replacement?",
    "Factor x^3 - 8 completely.",
    "Is the series sum of 1/n^2 convergent? What does it converge to?",
    "Convert 0.375 to a fraction in lowest terms.",
    "What is the area of a triangle with sides 5, 6 and 7?",
    "Explain Bayes' theorem with a medical test example.",
    "How many diagonals does a decagon have?",
    "Find the derivative of ln(x^2 + 1) using the chain rule.",
    "What is the expected value of rolling a fair 20-sided die?",
    "Solve the differential equation dy/dx = 3y with y(0) = 2.",
)
add("math", "typo",
    "whats the square root of 1764",
    "how do u solve 2x^2+3x-5=0 step by step",
    "can sombody explain what a logarithm actualy is",
    "lcm of 12 18 and 30??",
)
add("math", "multi",
    "A train leaves at 9:00 going 80 km/h. Another leaves the same station at 10:00 going 100 km/h on the "
    "same track. When does the second catch up?",
    "I have a rectangle whose length is twice its width. Its perimeter is 54 cm. What are its dimensions?",
    "My kid's homework asks to prove that there are infinitely many primes. I forgot how it goes. Can you "
    "walk me through it?",
)
add("math", "hard",
    "How many different passwords of length 8 can be made from lowercase letters and digits?",
    "Prove that the time complexity of binary search is O(log n).",
    "If my subscription costs 12 a month with a 15% discount for paying yearly, what's the yearly price?",
)
add("math", "",
    """I'm stuck on this problem from my calculus homework:

A farmer has 600 metres of fencing and wants to enclose a rectangular field that borders a straight
river. He does not need a fence along the river. What dimensions maximise the area of the field, and
what is that maximum area? I set up A = x * y and 2x + y = 600 but I'm not sure how to continue from
there. Please show each step, including how we know it's a maximum and not a minimum.""",
    """Here's a statistics question from my course. A factory produces bolts whose lengths are normally
distributed with mean 50 mm and standard deviation 0.4 mm. Bolts shorter than 49.2 mm or longer than
50.8 mm are rejected.
(a) What proportion of bolts is rejected?
(b) If the standard deviation could be reduced to 0.3 mm, what proportion would be rejected then?
(c) What standard deviation would be needed so that only 1% are rejected?
Please explain how to use the z-table for each part.""",
    """Can you check my proof? Claim: for every integer n >= 1, 3^n - 1 is divisible by 2.
My attempt: Base case n = 1: 3 - 1 = 2, divisible by 2. Inductive step: assume 3^k - 1 = 2m for some
integer m. Then 3^(k+1) - 1 = 3 * 3^k - 1 = 3(2m + 1) - 1 = 6m + 2 = 2(3m + 1). So it's divisible by 2.
Is this correct and complete? Is there a shorter argument without induction?""",
    """We are planning a round-robin tournament for our chess club. There are 14 players and every player
must play every other player exactly once. Each evening we can use 5 boards, and each game takes one
board for the whole evening. How many games are there in total, what's the minimum number of evenings
we need, and is it possible to schedule it so that nobody plays twice on the same evening? Please show
the combinatorics and not just the answer.""",
    """Linear algebra question. Let A = [[4, 1], [2, 3]].
1. Find the eigenvalues and eigenvectors of A.
2. Diagonalise A, i.e. write A = P D P^-1.
3. Use this to compute A^10 without multiplying A by itself ten times.
I know the characteristic polynomial is det(A - lambda I) = 0 but I keep getting the signs wrong, so
please go slowly on that part.""",
    """My daughter got this puzzle and neither of us can crack it: a snail is at the bottom of a 20 metre
well. Every day it climbs up 5 metres, and every night it slides back 4 metres. On which day does it get
out of the well? She says 20 days, I say 16. We'd like the reasoning, and then a general formula for a
well of height h with climb c and slide s.""",
    """Explain the difference between permutations and combinations, then solve these three:
- In how many ways can a committee of 4 be chosen from 10 people?
- In how many ways can a president, treasurer and secretary be chosen from 10 people?
- In how many ways can 10 people be seated around a round table, if rotations count as the same?
I always mix up when order matters.""",
)
add("math", "es",
    "¿Cómo se calcula la derivada de e^(3x) * cos(x)?",
    "Resuelve la ecuación 5x - 3 = 2x + 9 y explica cada paso.",
)
add("math", "fr",
    "Quelle est la probabilité d'obtenir au moins un six en lançant quatre dés ?",
)
add("math", "de",
    "Wie berechne ich das Volumen eines Kegels mit Radius 3 cm und Höhe 10 cm?",
    "Kannst du mir erklären, was eine Ableitung anschaulich bedeutet?",
)
