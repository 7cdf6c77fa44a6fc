"""Prompts for the `data_analysis` and `legal` routes."""

ITEMS = []


def add(label, tags, *texts):
    for t in texts:
        ITEMS.append((label, tags, t))


# ---------------------------------------------------------------- data_analysis
add("data_analysis", "",
    "Write a SQL query that returns each customer's first and most recent order date.",
    "How do I make a line chart with two y-axes in Excel?",
    "In pandas, how do I fill missing values with the column median?",
    "What's the difference between a left join and an inner join, with an example on my orders table?",
    "Which statistical test should I use to compare conversion rates between two landing pages?",
    "How do I calculate year-over-year growth in Google Sheets?",
    "Group these sales by region and quarter and show the totals in a pivot.",
    "How can I detect outliers in a column of response times?",
    "Write a query to find duplicate email addresses in the users table.",
    "Explain what a p-value of 0.03 means for my A/B test.",
    "How do I bin ages into groups like 18-24, 25-34 in pandas?",
    "What's the best way to visualise the distribution of salaries by department?",
    "Compute a cohort retention table from this signups and logins data.",
    "How do I use SUMIFS with a date range in Excel?",
    "Is a correlation of 0.4 between ad spend and sales meaningful with 30 data points?",
    "Write a SQL window function to rank products by revenue within each category.",
)
add("data_analysis", "typo",
    "how to do a vlookup that returns mulitple matches",
    "pandas groupby then get the top 3 rows per group how",
    "sql query for averge order value per month",
    "whats the formla for weighted average in excel",
)
add("data_analysis", "multi",
    "I have a CSV with 2 million rows of sensor readings. Excel can't open it. What's the quickest way to "
    "get hourly averages per sensor?",
    "Our churn went from 3% to 5% last quarter. I have a table of cancellations with plan, tenure and "
    "region. How do I find out what's driving it?",
    "I'm preparing a dashboard for management. They want revenue, new customers and churn by month. What "
    "charts would you use?",
)
add("data_analysis", "hard",
    "Write SQL to total the refunds per month from our payments table.",
    "Calculate the mean and median of these test scores: 71, 85, 92, 64, 88, 79, 95.",
    "Summarise this dataset: which columns have missing values and what are the basic statistics?",
)
add("data_analysis", "",
    """I have these tables in Postgres:

customers(id, name, country, created_at)
orders(id, customer_id, created_at, status)
order_items(order_id, product_id, quantity, unit_price)
products(id, name, category)

I need a query that returns, for each country and product category, the total revenue in 2023 from
orders with status 'completed', plus the number of distinct customers who bought in that category. Sort
by revenue descending and only show combinations with more than 1000 in revenue.""",
    """Here's a sample of my data (monthly website visits and sign-ups):

month,visits,signups
2023-01,12000,340
2023-02,11500,310
2023-03,14200,420
2023-04,13900,405
2023-05,16800,530
2023-06,17100,520
2023-07,15400,460
2023-08,14900,455

Can you compute the conversion rate per month, tell me whether it's trending up or down, and suggest
a chart to present this to my manager?""",
    """I ran an A/B test on our pricing page for two weeks. Version A: 8,240 visitors, 412 purchases.
Version B: 8,115 visitors, 467 purchases. Average order value was about the same. My marketing manager
wants to roll out B immediately. Is the difference statistically significant, how confident can we be,
and is two weeks long enough given we have weekly seasonality? Please show the calculation so I can put
it in the report.""",
    """My pandas code is correct but super slow on 5 million rows. Can you help me rewrite it?

df['category'] = df.apply(lambda r: 'high' if r['amount'] > 1000 else ('mid' if r['amount'] > 100
else 'low'), axis=1)
result = []
for cust, g in df.groupby('customer_id'):
    result.append({'customer_id': cust, 'total': g['amount'].sum(), 'n_high': (g['category'] ==
'high').sum()})
out = pd.DataFrame(result)

I want the same output, just faster.""",
    """I'm analysing a survey. 1,200 respondents rated satisfaction from 1 to 5 and we also have age
group, region (4 regions), and whether they are a paying customer. Management wants to know which
factors are associated with low satisfaction. The ratings are ordinal and heavily skewed towards 4 and
5. What analysis would you recommend, which charts, and what pitfalls should I avoid when presenting the
results?""",
    """In Google Sheets I have a sheet 'Orders' with columns: Date (A), Customer (B), Product (C),
Quantity (D), Price (E). I want a second sheet 'Summary' that shows, for each customer, total spend,
number of orders, the date of their last order, and their most frequently bought product. It needs to
update automatically when new rows are added. Which formulas should I use? I'd rather avoid scripts.""",
    """We track delivery times for 3 warehouses. Here are the averages and standard deviations in hours
for last month: Leeds 26.1 (sd 8.2, n=1840), Bristol 24.9 (sd 11.5, n=1510), Glasgow 31.4 (sd 9.0,
n=920). The operations director says Glasgow is clearly the worst and wants to restructure it. Is the
difference real, and would a box plot or a histogram tell a better story? What other data should I look
at before drawing conclusions?""",
)
add("data_analysis", "es",
    "¿Cómo hago una tabla dinámica en Excel para ver las ventas por mes y por vendedor?",
    "Necesito una consulta SQL que cuente los pedidos por cliente en el último año.",
)
add("data_analysis", "fr",
    "Comment calculer une moyenne mobile sur 7 jours avec pandas ?",
)
add("data_analysis", "de",
    "Wie kann ich in Excel doppelte Einträge in einer Spalte finden und markieren?",
    "Welches Diagramm eignet sich am besten, um Umsatzanteile nach Produktgruppe darzustellen?",
)

# ---------------------------------------------------------------- legal
add("legal", "",
    "Can my employer change my shift schedule without notice?",
    "What's the difference between a patent and a copyright?",
    "My neighbour's tree hangs over my garden, am I allowed to cut the branches?",
    "Do I need a lawyer to set up a limited company?",
    "What rights do I have if a product I bought online arrives broken?",
    "Can a landlord enter my apartment without permission?",
    "Is it legal to use photos from Google Images on my company website?",
    "What happens if I break my lease six months early?",
    "How does probate work when someone dies without a will?",
    "Can I be sued for writing a bad review of a restaurant?",
    "What should a prenuptial agreement include?",
    "Is a signature on a PDF legally valid?",
    "Are unpaid internships legal?",
    "What are the GDPR obligations for a small online shop that collects emails?",
    "Can my ex move abroad with our child without my consent?",
    "Who owns the copyright to code I wrote on my own laptop while employed?",
)
add("legal", "typo",
    "can my boss make me work on sunday without paying extra",
    "is it legal to sublet my apartment on airbnb without teling the landlord",
    "got a cease and desist leter for my etsy shop name what do i do",
    "whats the diffrence between a misdemeanor and a felony",
)
add("legal", "multi",
    "I was hit by a car while cycling. The driver's insurance offered me 2,000. My bike alone cost 1,500. "
    "Should I accept or talk to a lawyer?",
    "My business partner wants to leave our LLC. We never wrote an operating agreement. How do we split "
    "things fairly and legally?",
    "I signed a gym contract for 24 months. I'm moving to another city. Can I cancel early?",
)
add("legal", "hard",
    "My company charged my card after I cancelled and refuses to refund. Can I take them to small claims court?",
    "Is it legal for my doctor to share my medical records with my employer?",
    "Can I legally translate and publish a foreign novel if the author died 60 years ago?",
)
add("legal", "",
    """Can you review this clause from my employment contract and tell me whether it's enforceable?

"For a period of twenty-four (24) months following the termination of employment for any reason, the
Employee shall not, directly or indirectly, engage in or be employed by any business that competes with
the Company anywhere in Europe, nor solicit any client of the Company."

I'm a junior software developer in Germany, and they're not offering any compensation for the
restriction. I've been offered a job at a company that partly overlaps with my current employer.""",
    """My landlord is refusing to return my 1,800 deposit. I lived in the flat for three years, left it
clean, and have photos from the day I moved out. He says he needs to repaint the whole flat and replace
the carpet, which was already old when I moved in. The tenancy agreement says the deposit covers
'damage beyond fair wear and tear'. The deposit wasn't put in a protection scheme as far as I know. What
are my options and what should I write to him first?""",
    """I'm a freelance illustrator. A client used my drawings in a national ad campaign, but our agreement
(an email thread, no formal contract) only mentioned 'use on the company blog and social media'. They
paid 600 for that. Now the drawings are on billboards. I want to be paid fairly for the extra use. Do I
have a case, what should I ask for, and how do I approach it without burning the relationship?""",
    """We're a startup of three founders. We've been working for a year without any written agreement,
and now an investor wants to put money in. One co-founder has been working part-time and wants an equal
share. What documents do we need before the investment (shareholder agreement, vesting, IP assignment?),
and what happens legally if we can't agree on the split?""",
    """Please look at this term from an app's terms of service and explain it in plain English:

"To the maximum extent permitted by applicable law, in no event shall the Company be liable for any
indirect, incidental, special, consequential or punitive damages, or any loss of profits or revenues,
whether incurred directly or indirectly, or any loss of data, use, goodwill, or other intangible
losses, resulting from your access to or use of or inability to access or use the services."

Does this mean I can't sue them if they lose all my files?""",
    """I was dismissed yesterday after 14 months at a retail company. The manager said it was for
'performance' but I've never had a written warning or a review, and two weeks ago I told HR I was
pregnant. They gave me one week's pay and asked me to sign a form saying I agree with the termination.
I haven't signed it. Is this discrimination, should I sign, and what deadlines do I need to watch out
for if I want to make a claim?""",
    """Our small company wants to record customer support calls for training. Some customers call from
other countries. What do we need to do legally: tell them at the start of the call, get explicit
consent, store the recordings for a limited time? We're based in Ireland. Also, can employees refuse to
have their calls recorded?""",
)
add("legal", "es",
    "¿Puede mi casero subirme el alquiler a mitad de contrato?",
    "¿Qué derechos tengo si me despiden sin previo aviso?",
)
add("legal", "fr",
    "Mon employeur peut-il refuser mes congés payés sans raison ?",
    "Est-ce légal de filmer quelqu'un dans la rue sans son accord ?",
)
add("legal", "de",
    "Darf mein Vermieter die Kaution einbehalten, wenn die Wohnung nicht frisch gestrichen ist?",
)
