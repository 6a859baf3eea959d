"""Word lists and the planted numbers of the sample company (everything a reader may want to tweak)."""

from __future__ import annotations

SITE = "https://www.northpeak.io"
OWN_DOMAIN = "northpeak.io"

# -- channels: planted MQL→SQL propensities, well separated so that 5,000 contacts rank them correctly --------
# channel -> (share of contacts, MQL→SQL propensity, hs_analytics_source_data_1 choices)
CHANNELS: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "OFFLINE": (0.12, 0.56, ("conference", "trade-show", "roundtable")),
    "REFERRALS": (0.13, 0.43, ("g2.com", "partner-blog", "capterra.com")),
    "PAID_SEARCH": (0.15, 0.33, ("google", "bing")),
    "ORGANIC_SEARCH": (0.18, 0.245, ("google", "bing", "duckduckgo")),
    "PAID_SOCIAL": (0.15, 0.175, ("linkedin", "linkedin", "facebook")),
    "EMAIL_MARKETING": (0.12, 0.115, ("newsletter", "partner-newsletter")),
    "DIRECT_TRAFFIC": (0.15, 0.065, ("", )),
}
# Small multipliers on the channel propensity (a buyer converts a bit more often than a practitioner).
PERSONA_MODIFIERS = {"economic_buyer": 1.1, "technical_evaluator": 1.0, "practitioner": 0.92, "other": 0.9,
                     "student": 0.5}
# Sales-cycle lag MQL→SQL in days, by segment (uniform in the range).
SEGMENT_LAG_DAYS = {"SMB": (7, 21), "Mid-Market": (21, 56), "Enterprise": (42, 112)}
# Size bands (labels from config/funnel.yml) -> segment; unknown bands fall back to SMB.
BAND_SEGMENT = {"1-50": "SMB", "51-200": "SMB", "201-1000": "Mid-Market", "1001-5000": "Enterprise",
                "5001+": "Enterprise"}
TEAMS = (("SMB", "101"), ("Mid-Market", "102"), ("Enterprise", "103"))
TEAM_SHARE = (0.45, 0.35, 0.20)
# employees ranges and their share of companies
COMPANY_SIZES = ((1, 50, 0.40), (51, 200, 0.27), (201, 1000, 0.19), (1001, 5000, 0.09), (5001, 60000, 0.05))
DEAL_AMOUNT = {"SMB": (4_000, 24_000), "Mid-Market": (20_000, 90_000), "Enterprise": (80_000, 420_000)}

INDUSTRIES = (
    ("COMPUTER_SOFTWARE", 13), ("INFORMATION_TECHNOLOGY_AND_SERVICES", 11), ("FINANCIAL_SERVICES", 8),
    ("MARKETING_AND_ADVERTISING", 9), ("HOSPITAL_HEALTH_CARE", 9), ("RETAIL", 10), ("EDUCATION_MANAGEMENT", 6),
    ("MANUFACTURING", 10), ("REAL_ESTATE", 5), ("CONSTRUCTION", 4), ("LOGISTICS_AND_SUPPLY_CHAIN", 5),
    ("INSURANCE", 5), ("NONPROFIT_ORGANIZATION_MANAGEMENT", 5),
)
REVENUE_PER_EMPLOYEE = {"COMPUTER_SOFTWARE": 230_000, "FINANCIAL_SERVICES": 300_000, "RETAIL": 160_000,
                        "NONPROFIT_ORGANIZATION_MANAGEMENT": 60_000, "EDUCATION_MANAGEMENT": 70_000}
CMS = (("wordpress", 30), ("hubspot", 14), ("contentful", 6), ("webflow", 10), ("drupal", 8), ("squarespace", 9),
       ("wix", 8), ("adobe_experience_manager", 6), ("sitecore", 4), ("shopify", 5))
WEB_TOOLS = ("google_analytics", "google_tag_manager", "segment", "hotjar", "intercom", "salesforce", "marketo",
             "cloudflare", "stripe", "zendesk")
COUNTRIES = (("United States", 52, "+1"), ("United Kingdom", 12, "+44"), ("Germany", 9, "+49"),
             ("Canada", 7, "+1"), ("France", 5, "+33"), ("Netherlands", 4, "+31"), ("Australia", 5, "+61"),
             ("Ireland", 2, "+353"), ("Sweden", 2, "+46"), ("Spain", 2, "+34"))

NAME_A = ("Blue", "North", "Bright", "Silver", "Iron", "Cedar", "Harbor", "Summit", "Atlas", "Pioneer", "Vertex",
          "Maple", "Granite", "Lumen", "Nimbus", "Orbit", "Quartz", "Riverside", "Sterling", "Tidal", "Union",
          "Vantage", "Willow", "Zenith", "Coastal", "Evergreen", "Falcon", "Golden", "Horizon", "Juniper", "Keystone",
          "Lakeshore", "Meridian", "Oakridge", "Prairie", "Redwood", "Sapphire", "Trident", "Upland", "Beacon")
NAME_B = ("Labs", "Systems", "Analytics", "Health", "Capital", "Logistics", "Retail", "Works", "Software", "Group",
          "Partners", "Digital", "Foods", "Manufacturing", "Insurance", "Learning", "Media", "Cloud", "Energy",
          "Robotics", "Finance", "Outfitters", "Clinics", "Realty", "Builders", "Networks", "Security", "Studio")
FIRST = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Chris", "Karen", "Daniel",
         "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Steven", "Emily", "Paul", "Donna",
         "Andrew", "Michelle", "Joshua", "Carol", "Kevin", "Amanda", "Brian", "Melissa", "George", "Deborah", "Tim",
         "Laura", "Ryan", "Rebecca", "Jacob", "Sharon", "Gary", "Cynthia", "Nicholas", "Kathleen", "Eric", "Amy",
         "Jonathan", "Angela", "Stephen", "Anna", "Larry", "Ruth", "Justin", "Brenda", "Scott", "Pamela", "Noah",
         "Emma", "Liam", "Olivia", "Lukas", "Mia", "Sofia", "Leon", "Hannah", "Finn", "Lea", "Priya", "Arjun", "Wei",
         "Mei", "Hiroshi", "Yuki", "Carlos", "Lucia", "Mateo", "Ingrid", "Lars", "Freya", "Amara", "Kwame", "Zara",
         "Omar", "Fatima", "Noor", "Sven", "Elin", "Chloe", "Louis", "Camille", "Jules", "Aisha")
LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
        "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
        "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker",
        "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams",
        "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Mueller", "Schmidt",
        "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Dubois", "Moreau", "Laurent", "Bernard",
        "Jansen", "de Vries", "Bakker", "Visser", "Murphy", "Kelly", "O'Brien", "Byrne", "Andersson", "Johansson",
        "Karlsson", "Nilsson", "Patel", "Shah", "Kumar", "Singh", "Chen", "Wang", "Li", "Zhang", "Tanaka", "Sato",
        "Suzuki", "Kim", "Park", "Okafor", "Mensah", "Haddad", "Rossi", "Russo", "Costa", "Silva", "Santos",
        "Novak", "Kowalski", "Horvat", "Ivanova", "Petrov")
JOB_TITLES = {
    "economic_buyer": ("VP Marketing", "Chief Marketing Officer", "Head of Revenue Operations", "VP Sales",
                       "Director of Demand Generation", "Chief Revenue Officer", "Head of Growth"),
    "technical_evaluator": ("Marketing Operations Manager", "Analytics Engineer", "Data Engineer",
                            "CRM Administrator", "Revenue Operations Analyst", "BI Developer",
                            "Marketing Technologist"),
    "practitioner": ("Marketing Manager", "Demand Generation Specialist", "Sales Development Representative",
                     "Content Marketing Manager", "Growth Marketer", "Account Executive", "Campaign Manager",
                     "Field Marketing Manager"),
    "student": ("Student", "MBA Candidate", "Marketing Intern", "Graduate Research Assistant"),
    "other": ("Office Manager", "Consultant", "Executive Assistant", "HR Generalist", "Product Designer",
              "Software Engineer", "Customer Support Specialist"),
}
PERSONAS = (("economic_buyer", 19), ("technical_evaluator", 24), ("practitioner", 42), ("other", 15))
UNIVERSITY_DOMAINS = ("stateuniversity.edu", "techinstitute.edu", "university-of-lakeside.edu",
                      "business-school.edu", "city-college.edu")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:129.0) Gecko/20100101 Firefox/129.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 "
    "Safari/537.36 Edg/127.0.2651.98",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
)
# Plain site pages (not in the content catalog): path -> title
SITE_PAGES = (("/", "Northpeak — the marketing-to-sales hand-off, measured"), ("/product", "Product"),
              ("/product/lead-scoring", "Product: Lead Scoring"), ("/product/routing", "Product: Lead Routing"),
              ("/integrations", "Integrations"), ("/customers", "Customers"), ("/about", "About Northpeak"),
              ("/security", "Security"), ("/blog", "Blog"), ("/resources", "Resources"))
# Referrers per channel (organic/paid search engines, partner sites)
REFERRERS = {"ORGANIC_SEARCH": ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/"),
             "PAID_SEARCH": ("https://www.google.com/", "https://www.bing.com/"),
             "PAID_SOCIAL": ("https://www.linkedin.com/", "https://www.facebook.com/"),
             "REFERRALS": ("https://www.g2.com/", "https://revopsweekly.example/", "https://www.capterra.com/"),
             "EMAIL_MARKETING": ("", ), "DIRECT_TRAFFIC": ("", ), "OFFLINE": ("", )}
SOURCE_REFERRER = {"google": "https://www.google.com/", "bing": "https://www.bing.com/",
                   "duckduckgo": "https://duckduckgo.com/", "linkedin": "https://www.linkedin.com/",
                   "facebook": "https://www.facebook.com/", "g2.com": "https://www.g2.com/",
                   "capterra.com": "https://www.capterra.com/", "partner-blog": "https://revopsweekly.example/"}
SOCIAL_ACTIONS = ("like", "comment", "share", "follow", "click")
# HubSpot's default call dispositions (their GUIDs), with a label for the CSV reader.
CALL_DISPOSITIONS = {
    "f240bbac-87c9-4f6e-bf70-924b57d47db7": "Connected",
    "73a0d17f-1163-4015-bdd5-ec830791da20": "No answer",
    "b2cf5968-551e-4856-9783-52b3da59a7d0": "Left voicemail",
    "9d9162e7-6cf3-4944-bf63-4dff82258764": "Busy",
}
DEAL_OPEN_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
                    "contractsent")
SIGNALS = (("Demo Requested", 45, "demo-request"), ("Pricing Requested", 20, "pricing-request"),
           ("Audit Requested", 15, "website-audit"), ("Meeting Booked", 20, ""))
